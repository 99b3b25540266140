// Layer norm over the last axis: xhat = (x - mean) * rstd, y = xhat * w + b,
// rstd = 1 / sqrt(var + eps). With g the output gradient, per row of C:
//   db = sum over rows of g            dw = sum over rows of g * xhat
//   dx = rstd * (g w - mean(g w) - xhat * mean(g w * xhat))
// The forward saves mean and rstd (one number per row) so that backward
// rebuilds xhat from x without a second statistics pass.
#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace mp::ag {

Variable layer_norm(const Variable& x, const Variable& w, const Variable& b, float eps) {
  if (!w.defined()) fail("layer_norm needs a weight");
  int64_t c = x.size(-1);
  ops::LayerNormOut fwd = ops::layer_norm(x.value(), w.value(), b.defined() ? b.value() : Tensor(), eps);
  bool need_x = needs_grad(x), need_w = needs_grad(w), need_b = needs_grad(b);
  // Every gradient but db needs xhat, i.e. x, mean and rstd; db needs only g.
  bool need_xhat = need_x || need_w;
  Tensor keep_x = need_xhat ? x.value().reshape({-1, c}) : Tensor();  // (N, C)
  Tensor mean = need_xhat ? fwd.mean.reshape({-1}) : Tensor();        // (N)
  Tensor rstd = need_xhat ? fwd.rstd.reshape({-1}) : Tensor();        // (N)
  Tensor keep_w = w.value();  // (C): a parameter, alive anyway; the kernel reads it for dx
  Shape x_shape = x.shape();
  return make_result(fwd.y, "layer_norm", {x, w, b}, [=](const Tensor& g, std::span<Tensor> gin) {
    Tensor g2 = g.reshape({-1, c}).contiguous();  // (N, C)
    if (!need_xhat) {  // only the bias: db = sum of g over rows
      gin[2] = ops::sum(g2, 0);
      return;
    }
    Device dev = g.device();
    // dx is written, dw and db are accumulated by the kernel: start them at 0.
    Tensor gx = need_x ? Tensor::empty({g2.size(0), c}, g.dtype(), dev) : Tensor();
    Tensor gw = need_w ? Tensor::zeros({c}, g.dtype(), dev) : Tensor();
    Tensor gb = need_b ? Tensor::zeros({c}, g.dtype(), dev) : Tensor();
    ops::layer_norm_backward(g2, keep_x.contiguous(), keep_w.contiguous(), mean, rstd, gx, gw, gb);
    if (need_x) gin[0] = gx.view(x_shape);
    if (need_w) gin[1] = gw;
    if (need_b) gin[2] = gb;
  });
}

}  // namespace mp::ag
