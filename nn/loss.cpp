#include "nn/loss.h"

#include "autograd/ops.h"
#include "engine/error.h"

namespace mp::nn {

ag::Variable cross_entropy(const ag::Variable& logits, const Tensor& targets, int ignore_index) {
  if (logits.dim() < 1) fail("cross_entropy: logits must have a class axis, not shape {}", shape_str(logits.shape()));
  if (targets.dtype() != DType::i32) fail("cross_entropy: targets must be i32, not {}", dtype_name(targets.dtype()));
  Shape leading(logits.shape().begin(), logits.shape().end() - 1);
  if (targets.shape() != leading)
    fail("cross_entropy: targets of shape {} do not match logits of shape {} (expected {})",
         shape_str(targets.shape()), shape_str(logits.shape()), shape_str(leading));
  int64_t V = logits.size(-1);
  int64_t N = shape_numel(leading);
  ag::Variable flat = logits.dim() == 2 ? logits : ag::reshape(logits, {N, V});  // (N, V)
  return ag::cross_entropy(flat, targets.reshape({N}), ignore_index);       // (1)
}

}  // namespace mp::nn
