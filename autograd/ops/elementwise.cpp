// Elementwise ops with NumPy broadcasting. The gradient of broadcasting is a
// sum: an input of shape (3, 1) added to a (2, 3, 4) output received each of
// its elements 2 * 4 times, so its gradient is the output gradient summed
// back to (3, 1) (ops::sum_to).
#include "autograd/ops.h"
#include "engine/ops.h"

namespace mp::ag {

// ---- binary ----------------------------------------------------------------

// out = a + b:  da = g,  db = g  (each summed back to its input's shape).
Variable add(const Variable& a, const Variable& b) {
  bool need_a = needs_grad(a), need_b = needs_grad(b);
  Shape sa = a.shape(), sb = b.shape();
  return make_result(ops::add(a.value(), b.value()), "add", {a, b},
                     [sa, sb, need_a, need_b](const Tensor& g, std::span<Tensor> gin) {
                       if (need_a) gin[0] = ops::sum_to(g, sa);
                       if (need_b) gin[1] = ops::sum_to(g, sb);
                     });
}

// out = a - b:  da = g,  db = -g.
Variable sub(const Variable& a, const Variable& b) {
  bool need_a = needs_grad(a), need_b = needs_grad(b);
  Shape sa = a.shape(), sb = b.shape();
  return make_result(ops::sub(a.value(), b.value()), "sub", {a, b},
                     [sa, sb, need_a, need_b](const Tensor& g, std::span<Tensor> gin) {
                       if (need_a) gin[0] = ops::sum_to(g, sa);
                       if (need_b) gin[1] = ops::scale(ops::sum_to(g, sb), -1.f);
                     });
}

// out = a * b:  da = g * b,  db = g * a.
// a is kept only when b needs a gradient, b only when a needs one.
Variable mul(const Variable& a, const Variable& b) {
  bool need_a = needs_grad(a), need_b = needs_grad(b);
  Tensor keep_a = need_b ? a.value() : Tensor();
  Tensor keep_b = need_a ? b.value() : Tensor();
  Shape sa = a.shape(), sb = b.shape();
  return make_result(ops::mul(a.value(), b.value()), "mul", {a, b},
                     [keep_a, keep_b, sa, sb, need_a, need_b](const Tensor& g, std::span<Tensor> gin) {
                       if (need_a) gin[0] = ops::sum_to(ops::mul(g, keep_b), sa);
                       if (need_b) gin[1] = ops::sum_to(ops::mul(g, keep_a), sb);
                     });
}

// out = a / b:  da = g / b,  db = -g * a / b^2.
// b is needed by both gradients; a only by db.
Variable div(const Variable& a, const Variable& b) {
  bool need_a = needs_grad(a), need_b = needs_grad(b);
  Tensor keep_a = need_b ? a.value() : Tensor();
  Tensor keep_b = b.value();
  Shape sa = a.shape(), sb = b.shape();
  return make_result(ops::div(a.value(), b.value()), "div", {a, b},
                     [keep_a, keep_b, sa, sb, need_a, need_b](const Tensor& g, std::span<Tensor> gin) {
                       Tensor g_over_b = ops::div(g, keep_b);  // g / b, shared by both
                       if (need_b) {
                         Tensor gb = ops::mul(g_over_b, ops::div(keep_a, keep_b));  // g a / b^2
                         gin[1] = ops::scale(ops::sum_to(gb, sb), -1.f);
                       }
                       if (need_a) gin[0] = ops::sum_to(g_over_b, sa);
                     });
}

// out = s * a:  da = s * g.
Variable scale(const Variable& a, float s) {
  return make_result(ops::scale(a.value(), s), "scale", {a},
                     [s](const Tensor& g, std::span<Tensor> gin) { gin[0] = ops::scale(g, s); });
}

Variable neg(const Variable& a) {
  return make_result(ops::scale(a.value(), -1.f), "neg", {a},
                     [](const Tensor& g, std::span<Tensor> gin) { gin[0] = ops::scale(g, -1.f); });
}

// ---- unary ----------------------------------------------------------------

// out = f(a):  da = g * f'(a). The backend computes f' from whichever of the
// input x or the output y is cheaper, so the node keeps only that one:
//   exp:  f' = y          sqrt: f' = 1 / (2 y)      tanh: f' = 1 - y^2
//   log:  f' = 1 / x      square: f' = 2 x
//   relu: f' = [x > 0]    gelu: f' from x (tanh approximation)
static bool derivative_from_output(UnaryOp op) {
  return op == UnaryOp::exp || op == UnaryOp::sqrt || op == UnaryOp::tanh;
}

static Variable unary(UnaryOp op, const char* name, const Variable& a) {
  Tensor y = ops::unary(op, a.value());
  Tensor keep = derivative_from_output(op) ? y : a.value();
  return make_result(y, name, {a}, [op, keep](const Tensor& g, std::span<Tensor> gin) {
    gin[0] = ops::unary_backward(op, keep, g);
  });
}

Variable exp(const Variable& a) { return unary(UnaryOp::exp, "exp", a); }
Variable log(const Variable& a) { return unary(UnaryOp::log, "log", a); }
Variable sqrt(const Variable& a) { return unary(UnaryOp::sqrt, "sqrt", a); }
Variable tanh(const Variable& a) { return unary(UnaryOp::tanh, "tanh", a); }
Variable square(const Variable& a) { return unary(UnaryOp::square, "square", a); }
Variable relu(const Variable& a) { return unary(UnaryOp::relu, "relu", a); }
Variable gelu(const Variable& a) { return unary(UnaryOp::gelu, "gelu", a); }

}  // namespace mp::ag
