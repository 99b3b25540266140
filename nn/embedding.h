// Embedding: a (V, C) table whose rows are looked up by integer ids
// (torch.nn.Embedding). The gradient is a scatter-add into the rows used,
// except row padding_idx (when >= 0), which this lookup never updates.
#pragma once
#include <cstdint>

#include "nn/module.h"
#include "nn/rng.h"

namespace mp::nn {

class Embedding : public Module {
 public:
  // weight ~ N(0, 1), as torch.nn.Embedding (which also zeroes row padding_idx;
  // models' own init does that here).
  Embedding(int64_t num_embeddings, int64_t embedding_dim, int padding_idx = -1, uint64_t seed = next_init_seed());

  // ids (...) i32 -> (..., C). An id outside [0, V) is an mp::Error.
  Variable forward(const Tensor& ids) const;

  int64_t num_embeddings() const { return weight.size(0); }
  int64_t embedding_dim() const { return weight.size(1); }

  Variable weight;  // (V, C)
  int padding_idx;  // -1: none
};

}  // namespace mp::nn
