#include "nn/embedding.h"

#include "autograd/ops.h"
#include "engine/error.h"
#include "nn/init.h"
#include "nn/weight_dtype.h"

namespace mp::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, int padding_idx, uint64_t seed)
    : padding_idx(padding_idx) {
  if (num_embeddings <= 0 || embedding_dim <= 0)
    fail("Embedding({}, {}): sizes must be positive", num_embeddings, embedding_dim);
  if (padding_idx < -1 || padding_idx >= num_embeddings)
    fail("Embedding({}, {}): padding_idx {} is not a row", num_embeddings, embedding_dim, padding_idx);
  TagScope scope(Tag::weights);
  Tensor w = Tensor::empty({num_embeddings, embedding_dim}, weight_dtype());  // (V, C)
  init::normal_(w, 0.0, 1.0, seed);
  weight = add_parameter("weight", w);
}

Variable Embedding::forward(const Tensor& ids) const {
  if (ids.dtype() != DType::i32) fail("Embedding: ids must be i32, not {}", dtype_name(ids.dtype()));
  return ag::embedding(ids, weight, padding_idx);  // (..., C)
}

}  // namespace mp::nn
