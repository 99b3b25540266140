#include "train/data/random_tokens.h"

#include <random>

namespace mp::train {

Tensor random_token_ids(int64_t B, int64_t T, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, int32_t(vocab) - 1);
  Tensor ids = Tensor::empty({B, T}, DType::i32, kCPU);  // (B, T)
  int32_t* p = ids.data<int32_t>();
  for (int64_t i = 0; i < B * T; ++i) p[i] = id(rng);
  return ids;
}

}  // namespace mp::train
