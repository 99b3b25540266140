#include "nn/init.h"

#include <cmath>

#include "engine/error.h"
#include "engine/ops.h"

namespace mp::nn::init {

void normal_(const Tensor& t, double mean, double std, uint64_t seed) {
  ops::random(t, Distribution::normal, mean, std, seed);
}

void uniform_(const Tensor& t, double low, double high, uint64_t seed) {
  ops::random(t, Distribution::uniform, low, high, seed);
}

void zeros_(const Tensor& t) { ops::fill(t, 0.0); }
void ones_(const Tensor& t) { ops::fill(t, 1.0); }

int64_t fan_in(const Tensor& t) {
  if (t.dim() == 0) fail("fan_in of a 0-d tensor is undefined");
  if (t.dim() == 1) return t.size(0);
  int64_t receptive = 1;
  for (int d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return t.size(1) * receptive;
}

double kaiming_uniform_bound(int64_t fan_in, double a) {
  if (fan_in <= 0) fail("kaiming_uniform_: fan_in must be positive, not {}", fan_in);
  double gain = std::sqrt(2.0 / (1.0 + a * a));
  return gain * std::sqrt(3.0 / double(fan_in));
}

void kaiming_uniform_(const Tensor& t, double a, uint64_t seed) {
  double bound = kaiming_uniform_bound(fan_in(t), a);
  uniform_(t, -bound, bound, seed);
}

}  // namespace mp::nn::init
