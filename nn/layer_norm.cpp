#include "nn/layer_norm.h"

#include "autograd/ops.h"
#include "engine/error.h"

namespace mp::nn {

LayerNorm::LayerNorm(int64_t normalized_size, float eps, bool elementwise_affine, bool has_bias)
    : size_(normalized_size), eps_(eps) {
  if (normalized_size <= 0) fail("LayerNorm({}): size must be positive", normalized_size);
  TagScope scope(Tag::weights);
  if (elementwise_affine) {
    weight = add_parameter("weight", Tensor::full({size_}, 1.0));  // (C)
    if (has_bias) bias = add_parameter("bias", Tensor::zeros({size_}));  // (C)
  } else {
    unit_weight_ = Variable(Tensor::full({size_}, 1.0), false);
  }
}

Variable LayerNorm::forward(const Variable& x) const {
  if (x.dim() == 0 || x.size(-1) != size_)
    fail("LayerNorm({}): input of shape {} does not end in {}", size_, shape_str(x.shape()), size_);
  return ag::layer_norm(x, weight.defined() ? weight : unit_weight_, bias, eps_);  // (..., C)
}

}  // namespace mp::nn
