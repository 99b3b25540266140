// Parameter initialisation, in place, with explicit seeds (torch.nn.init
// semantics). Each fills the whole tensor through Backend::random (Philox),
// so the values depend only on (seed, element index), not on threads or the
// device. Tensors of any float dtype; the maths is f32.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace mp::nn::init {

void normal_(const Tensor& t, double mean, double std, uint64_t seed);
void uniform_(const Tensor& t, double low, double high, uint64_t seed);
void zeros_(const Tensor& t);
void ones_(const Tensor& t);

// fan_in of a weight as torch computes it: size(1) * (product of dims after 1)
// for dim >= 2, size(0) for a 1-D tensor. A 2-D (out, in) weight has fan_in = in.
int64_t fan_in(const Tensor& t);

// torch.nn.init.kaiming_uniform_(t, a, mode='fan_in', nonlinearity='leaky_relu'):
// U(-bound, bound) with bound = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)).
// torch.nn.Linear uses a = sqrt(5), which gives bound = 1 / sqrt(fan_in).
void kaiming_uniform_(const Tensor& t, double a, uint64_t seed);
double kaiming_uniform_bound(int64_t fan_in, double a);

}  // namespace mp::nn::init
