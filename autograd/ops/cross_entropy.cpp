// Cross-entropy of logits (N, V) against targets (N), averaged over the rows
// whose target is not ignore_index:
//   loss = (1/count) sum_n -log softmax(logits_n)[target_n]
//   dlogits_n = (g/count) (softmax(logits_n) - onehot(target_n)),  0 for ignored rows
// The backend fuses softmax with the loss row by row, so the (N, V)
// probabilities are never stored; backward recomputes them from the logits.
#include "autograd/ops.h"
#include "autograd/ops/targets.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace mp::ag {

namespace detail {

void check_targets(const char* op, const Tensor& targets, int64_t N) {
  if (targets.shape() != Shape{N}) fail("{}: targets {} must be ({}), one per row", op, shape_str(targets.shape()), N);
  if (targets.dtype() != DType::i32) fail("{}: targets must be i32, not {}", op, dtype_name(targets.dtype()));
}

Tensor mean_loss(const Tensor& losses, const Tensor& inv_count) {
  return ops::mul(ops::sum_all(losses), inv_count.to(losses.dtype()));
}

Tensor gradient_scale(const Tensor& g, const Tensor& inv_count) { return ops::mul(g.to(DType::f32), inv_count); }

}  // namespace detail

Variable cross_entropy(const Variable& logits, const Tensor& targets, int ignore_index) {
  if (logits.dim() != 2) fail("cross_entropy: logits {} must be (N, V)", shape_str(logits.shape()));
  detail::check_targets("cross_entropy", targets, logits.size(0));
  Tensor keep_targets = targets.contiguous();  // (N)
  // Every row ignored: the loss is 0 and so is every gradient (not 0/0).
  Tensor inv_count = ops::inverse_target_count(keep_targets, ignore_index);  // (1)
  Tensor keep_logits = logits.value().contiguous();  // (N, V): backward recomputes softmax from these
  ops::CrossEntropyRows rows = ops::cross_entropy_rows(keep_logits, keep_targets, ignore_index);  // (N), (N)
  Tensor loss = detail::mean_loss(rows.losses, inv_count);                                        // (1)
  Tensor keep_lse = rows.lse;                                                                     // (N)
  return make_result(loss, "cross_entropy", {logits},
                     [keep_logits, keep_targets, keep_lse, ignore_index, inv_count](const Tensor& g,
                                                                                    std::span<Tensor> gin) {
                       Tensor glogits = Tensor::empty(keep_logits.shape(), keep_logits.dtype(), keep_logits.device());
                       Tensor gscale = detail::gradient_scale(g, inv_count);  // (1)
                       ops::cross_entropy_backward(keep_logits, keep_targets, keep_lse, ignore_index, gscale, glogits);
                       gin[0] = glogits;
                     });
}

}  // namespace mp::ag
