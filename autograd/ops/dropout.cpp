// Dropout: out = x * keep / (1 - p), keep ~ Bernoulli(1 - p). The gradient is
// the same mask applied to g: dx = g * keep / (1 - p). The mask is a pure
// function of (seed, element index) (Philox), so backward regenerates it by
// running dropout on g with the same seed: nothing is saved.
#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace mp::ag {

Variable dropout(const Variable& x, float p, uint64_t seed, uint64_t offset) {
  if (!(p >= 0.f && p < 1.f)) fail("dropout probability must be in [0, 1), got {}", p);
  if (p == 0.f) return x;
  return make_result(ops::dropout(x.value(), p, seed, offset), "dropout", {x},
                     [p, seed, offset](const Tensor& g, std::span<Tensor> gin) { gin[0] = ops::dropout(g, p, seed, offset); });
}

}  // namespace mp::ag
