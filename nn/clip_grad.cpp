#include "nn/clip_grad.h"

#include <algorithm>
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

namespace {

constexpr double kEps = 1e-6;  // torch's clip_grad_norm_: coef = max_norm / (norm + 1e-6)

// A norm read on the host: a meta one has no value (its gradients none: 0).
double read(const Tensor& norm) { return norm.device().is_meta() ? 0.0 : norm.item(); }

}  // namespace

Tensor grad_norm_tensor(const std::vector<Variable>& params) {
  TagScope scope(Tag::workspace);
  double host_sum = 0;  // the CPU's f32 gradients, summed here
  Device host = kCPU;   // their device: the CPU, or meta (no values, the same allocations)
  bool any_host = false;
  Tensor on_device;  // (1) f64: the other gradients' sum of squares, summed where they are
  for (const Variable& p : params) {
    if (!p.defined() || !p.grad().defined()) continue;
    const Tensor& g = p.grad();
    if ((g.device().is_cpu() || g.device().is_meta()) && g.dtype() == DType::f32 && g.is_contiguous()) {
      any_host = true;
      host = g.device();
      if (!g.device().is_meta()) host_sum += squared_norm(g.data<float>(), g.numel());
      continue;
    }
    // Other devices and dtypes: widen to f64 there and reduce there.
    Tensor g64 = g.to(DType::f64);
    Tensor s = ops::sum_all(ops::mul(g64, g64));
    on_device = on_device.defined() ? ops::add(on_device, s) : s;
  }
  Tensor sum;  // (1) f64
  if (any_host || !on_device.defined()) {
    sum = Tensor::empty({1}, DType::f64, host);
    ops::fill(sum, host_sum);
  }
  if (on_device.defined()) sum = sum.defined() ? ops::add(sum.to(on_device.device()), on_device) : on_device;
  return ops::unary(UnaryOp::sqrt, sum);
}

Tensor clip_grad_norm_tensor(const std::vector<Variable>& params, double max_norm) {
  if (!(max_norm > 0)) fail("clip_grad_norm: max_norm must be > 0, not {}", max_norm);
  Tensor norm = grad_norm_tensor(params);  // (1) f64
  for (const Variable& p : params)
    if (p.defined() && p.grad().defined()) ops::clip_by_norm(p.grad(), norm, max_norm, kEps);
  return norm;
}

double grad_norm(const std::vector<Variable>& params) { return read(grad_norm_tensor(params)); }

double clip_grad_norm(const std::vector<Variable>& params, double max_norm) {
  return read(clip_grad_norm_tensor(params, max_norm));
}

double clip_grad_norm(const std::vector<NamedParameter>& params, double max_norm) {
  std::vector<Variable> vars;
  for (const auto& [name, v] : params) vars.push_back(v);
  return clip_grad_norm(vars, max_norm);
}

}  // namespace mp::nn
