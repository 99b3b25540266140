#include "nn/clip_grad.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/error.h"
#include "engine/ops.h"

namespace mp::nn {

// Sum of squares of n floats in f64: blocks summed in parallel, then the
// block sums in order, so the result does not depend on the thread count.
static double squared_norm(const float* x, int64_t n) {
  constexpr int64_t kBlock = 1 << 16;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks));  // (blocks)
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t end = std::min(n, (b + 1) * kBlock);
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = b * kBlock; i < end; ++i) s += double(x[i]) * double(x[i]);
    partial[size_t(b)] = s;
  }
  double sum = 0;
  for (double s : partial) sum += s;
  return sum;
}

double grad_norm(const std::vector<Variable>& params) {
  TagScope scope(Tag::workspace);
  double sum = 0;
  Tensor on_device;  // (1) f64: the device's gradients' sum of squares, read once at the end
  for (const Variable& p : params) {
    if (!p.defined() || !p.grad().defined()) continue;
    const Tensor& g = p.grad();
    const bool host = g.device().is_cpu() || g.device().is_meta();
    if (host && g.dtype() == DType::f32 && g.is_contiguous()) {
      // A meta gradient has no values: 0, with the CPU branch's allocations (none).
      if (!g.device().is_meta()) sum += squared_norm(g.data<float>(), g.numel());
      continue;
    }
    // Other devices and dtypes: widen to f64 there and reduce there.
    Tensor g64 = g.to(DType::f64);
    Tensor s = ops::sum_all(ops::mul(g64, g64));
    on_device = on_device.defined() ? ops::add(on_device, s) : s;
  }
  if (on_device.defined() && !on_device.device().is_meta()) sum += on_device.item();
  return std::sqrt(sum);
}

double clip_grad_norm(const std::vector<Variable>& params, double max_norm) {
  if (!(max_norm > 0)) fail("clip_grad_norm: max_norm must be > 0, not {}", max_norm);
  double norm = grad_norm(params);
  double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0 || std::isnan(coef)) {
    for (const Variable& p : params)
      if (p.defined() && p.grad().defined()) ops::axpby(float(coef), p.grad(), 0.f, p.grad());  // g *= coef
  }
  return norm;
}

double clip_grad_norm(const std::vector<NamedParameter>& params, double max_norm) {
  std::vector<Variable> vars;
  for (const auto& [name, v] : params) vars.push_back(v);
  return clip_grad_norm(vars, max_norm);
}

}  // namespace mp::nn
