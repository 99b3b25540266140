// Token ids drawn uniformly from the vocabulary: the data of benchmarks on
// random weights, where only shapes and speed matter.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace mp::train {

// (B, T) int32 ids in [0, vocab), the same for the same seed; on the CPU.
Tensor random_token_ids(int64_t B, int64_t T, int64_t vocab, uint64_t seed);

}  // namespace mp::train
