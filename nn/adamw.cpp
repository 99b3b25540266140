#include "nn/adamw.h"

#include "engine/error.h"
#include "engine/ops.h"

namespace mp::nn {

AdamW::AdamW(const std::vector<NamedParameter>& params, const AdamWOptions& options)
    : Optimizer(params, options.lr, {"m", "v"}), options_(options) {
  if (!(options.lr >= 0)) fail("AdamW: lr must be >= 0, not {}", options.lr);
  if (!(options.beta1 >= 0 && options.beta1 < 1)) fail("AdamW: beta1 must be in [0, 1), not {}", options.beta1);
  if (!(options.beta2 >= 0 && options.beta2 < 1)) fail("AdamW: beta2 must be in [0, 1), not {}", options.beta2);
  if (!(options.eps >= 0)) fail("AdamW: eps must be >= 0, not {}", options.eps);
  if (!(options.weight_decay >= 0)) fail("AdamW: weight_decay must be >= 0, not {}", options.weight_decay);
  for (const auto& [name, p] : this->params())
    if (p.value().dtype() != DType::f32 || !p.value().is_contiguous())
      fail("AdamW: parameter '{}' must be a contiguous f32 tensor to be trained (it is {})", name,
           dtype_name(p.value().dtype()));
}

void AdamW::update(Slot& slot) {
  const Tensor& param = slot.param.value();
  Tensor grad = slot.param.grad().contiguous();
  if (grad.dtype() != DType::f32) grad = grad.to(DType::f32);
  Tensor& m = state_zeros(slot, 0);
  Tensor& v = state_zeros(slot, 1);
  ops::adamw(param, grad, m, v, float(lr()), float(options_.beta1), float(options_.beta2), float(options_.eps),
             float(options_.weight_decay), slot.steps);
}

}  // namespace mp::nn
