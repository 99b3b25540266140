// softmax and log_softmax over the last axis. Both backwards need only the
// output y (never the input):
//   softmax:     dx = y * (g - sum(g * y))
//   log_softmax: dx = g - softmax(x) * sum(g) = g - exp(y) * sum(g)
// (sums over the last axis, per row); the backend computes both.
#include "autograd/ops.h"
#include "engine/ops.h"

namespace mp::ag {

static Variable softmax_op(const Variable& x, bool log) {
  Tensor y = log ? ops::log_softmax(x.value()) : ops::softmax(x.value());  // (..., C)
  return make_result(y, log ? "log_softmax" : "softmax", {x}, [y, log](const Tensor& g, std::span<Tensor> gin) {
    gin[0] = ops::softmax_backward(y, g, log);
  });
}

Variable softmax(const Variable& x) { return softmax_op(x, false); }
Variable log_softmax(const Variable& x) { return softmax_op(x, true); }

}  // namespace mp::ag
