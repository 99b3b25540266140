#include "peft/dora.h"

#include "autograd/ops.h"
#include "engine/nf4.h"
#include "engine/ops.h"

namespace mp::peft {

namespace {

// W0 x without the bias: x (..., in) -> (..., out).
Variable base_product(const nn::Linear& base, const Variable& x) {
  if (base.nf4_weight()) return ag::linear_nf4(x, base.nf4_weight(), Variable());
  return ag::linear(x, base.weight, Variable(), base.layout() == nn::Layout::conv1d);
}

// A per-channel factor (out) shaped to scale the output channels of base.weight:
// (out, 1) against a torch (out, in) weight, (1, out) against a conv1d (in, out) one.
Tensor channel_factor(const nn::Linear& base, const Tensor& f) {
  return base.layout() == nn::Layout::torch ? f.reshape({f.numel(), 1}) : f.reshape({1, f.numel()});
}

}  // namespace

Tensor dora_weight_norm(const nn::Linear& base, const LoraWeights& w) {
  ag::NoGrad no_grad;
  TagScope scope(Tag::workspace);
  // W0 + s B A as (out, in) in the adapter's dtype: PEFT transposes a Conv1D weight before adding.
  const Tensor& A = w.A.value();
  Tensor W;  // (out, in)
  if (base.nf4_weight()) {
    W = nf4_dequantize(*base.nf4_weight());  // f32
    if (W.dtype() != A.dtype()) W = W.to(A.dtype());
  } else {
    W = Tensor::empty({base.out_features(), base.in_features()}, A.dtype(), A.device());
    W.copy_from(base.layout() == nn::Layout::conv1d ? base.weight.value().transpose(0, 1) : base.weight.value());
  }
  add_lora_delta(W, nn::Layout::torch, w, w.scaling);
  return ops::unary(UnaryOp::sqrt, ops::sum(ops::unary(UnaryOp::square, W), 1));  // (out)
}

// Backward is the autograd ops' own; the norm n enters as a constant, so
// with g = dh and u = W0 x + s B A x (the drop-free case):
//   dm = sum over tokens of g * u / n,  du = g * m / n  (on to x, A and B as LoRA's).
Variable dora_forward(const Variable& x, const Variable& base_out, const nn::Linear& base, const LoraWeights& w,
                      float p, uint64_t seed, uint64_t offset) {
  const Variable f = ag::div(w.magnitude, Variable(dora_weight_norm(base, w)));  // (out) m / n
  Variable h = lora_down(x, w.A, p, seed, offset);                                  // (..., r) A d(x)
  const Variable lora = ag::scale(ag::linear(h, w.B, Variable()), w.scaling);       // (..., out) s B A d(x)

  Variable w0x, rest;  // W0 d(x), and what f does not scale
  if (p > 0.f) {
    // The same mask as lora_down's (one seed and offset): d(x) is made again, not kept.
    w0x = base_product(base, ag::dropout(x, p, seed, offset));  // (..., out)
    rest = ag::sub(base_out, w0x);                              // (..., out) W0 x + b - W0 d(x)
  } else if (base.bias.defined()) {
    w0x = ag::sub(base_out, base.bias);  // (..., out)
    rest = base.bias;                    // (out)
  } else {
    w0x = base_out;
  }
  const Variable scaled = ag::mul(ag::add(w0x, lora), f);  // (..., out) f * (W0 d(x) + s B A d(x))
  return rest.defined() ? ag::add(scaled, rest) : scaled;  // (..., out)
}

Tensor dora_merge(nn::Linear& base, const LoraWeights& w) {
  Tensor W = base.weight.value();  // shares the parameter's storage
  Tensor norm = dora_weight_norm(base, w);  // of the unmerged weight, as forward and PEFT's merge
  TagScope scope(Tag::weights);
  add_lora_delta(W, base.layout(), w, w.scaling);
  W.copy_from(ops::mul(W, channel_factor(base, ops::div(w.magnitude.value(), norm))));
  return norm;
}

void dora_unmerge(nn::Linear& base, const LoraWeights& w, const Tensor& norm) {
  Tensor W = base.weight.value();  // shares the parameter's storage
  TagScope scope(Tag::weights);
  W.copy_from(ops::div(W, channel_factor(base, ops::div(w.magnitude.value(), norm))));
  add_lora_delta(W, base.layout(), w, -w.scaling);
}

}  // namespace mp::peft
