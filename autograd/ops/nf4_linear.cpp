// y = x W^T + b with W (out, in) a frozen NF4 matrix (engine/nf4.h), the base
// weight of QLoRA. W has no gradient, so nothing is kept for one: backward
// gives the input's gradient dx = g W (the weight dequantized a panel at a
// time again, never whole) and the bias's db = sum of g over rows. The input
// x is not kept. Under autocast (autograd/autocast.h) both products read
// bf16 copies of x and g, as ag::linear's do.
#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/nf4.h"
#include "engine/ops.h"

namespace mp::ag {

Variable linear_nf4(const Variable& x, const std::shared_ptr<const Nf4Tensor>& w, const Variable& b) {
  if (!w || w->shape.size() != 2) fail("linear_nf4: the nf4 weight must be 2-D");
  const int64_t out = w->shape[0];
  if (b.defined() && b.shape() != Shape{out})
    fail("linear_nf4: bias {} does not match {} outputs", shape_str(b.shape()), out);
  const bool need_x = needs_grad(x), need_b = needs_grad(b);
  const DType dt = autocast_dtype();  // backward keeps the choice made here
  auto operand = [dt](const Tensor& t) { return dt == DType::bf16 || t.dtype() == DType::f32 ? gemm_operand(t, dt) : t.to(DType::f32); };
  Tensor y = nf4_matmul(operand(x.value()), *w, true);  // (..., out)
  if (b.defined()) ops::axpby(1.f, b.value().to(DType::f32), 1.f, y.view({-1, out}));
  const DType x_dtype = x.value().dtype();
  return make_result(y, "linear_nf4", {x, b}, [=](const Tensor& g, std::span<Tensor> gin) {
    Tensor g32 = g.dtype() == DType::f32 ? g : g.to(DType::f32);  // (..., out)
    if (need_x) {
      Tensor gx = nf4_matmul(operand(g32), *w, false);  // (..., in)
      gin[0] = gx.dtype() == x_dtype ? gx : gx.to(x_dtype);
    }
    if (need_b) gin[1] = ops::sum(g32.reshape({-1, out}), 0);  // (out)
  });
}

}  // namespace mp::ag
