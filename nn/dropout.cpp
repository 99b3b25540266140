#include "nn/dropout.h"

#include "autograd/ops.h"
#include "engine/error.h"
#include "nn/rng.h"

namespace mp::nn {

Dropout::Dropout(float p, std::optional<uint64_t> base_seed)
    : p_(p), base_seed_(base_seed), instance_(next_dropout_instance()) {
  if (!(p >= 0.f && p < 1.f)) fail("Dropout: p must be in [0, 1), not {}", p);
}

Variable Dropout::forward(const Variable& x) const {
  if (!is_training() || p_ == 0.f) return x;
  const uint64_t seed = next_dropout_seed(instance_, base_seed_);
  return ag::dropout(x, p_, seed, dropout_offset(x.value().numel()));
}

}  // namespace mp::nn
