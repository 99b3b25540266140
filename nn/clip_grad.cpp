#include "nn/clip_grad.h"

#include <vector>

#include "engine/error.h"
#include "engine/ops.h"

namespace mp::nn {

namespace {

constexpr double kEps = 1e-6;  // torch's clip_grad_norm_: coef = max_norm / (norm + 1e-6)

// A norm read on the host: a meta one has no value (its gradients none: 0).
double read(const Tensor& norm) { return norm.device().is_meta() ? 0.0 : norm.item(); }

}  // namespace

Tensor grad_norm_tensor(const std::vector<Variable>& params) {
  TagScope scope(Tag::workspace);
  Tensor sum;  // (1) f64: the squares of every gradient, summed where they are, in their order
  for (const Variable& p : params) {
    if (!p.defined() || !p.grad().defined()) continue;
    if (!sum.defined()) sum = Tensor::zeros({1}, DType::f64, p.grad().device());
    ops::add_sum_of_squares(p.grad(), sum);
  }
  if (!sum.defined()) sum = Tensor::zeros({1}, DType::f64);  // no gradients: 0
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
