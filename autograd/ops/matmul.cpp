// Matrix products: matmul and linear. For out = op(A) op(B) (op = identity
// or transpose) with incoming gradient G:
//
//   d op(A) = G op(B)^T        d op(B) = op(A)^T G
//
// A's gradient needs B and B's needs A, so each operand is kept only when
// the OTHER one needs a gradient: with a frozen weight W, y = x W keeps W
// (alive anyway) but not the activation x. Transposes are passed to the
// GEMM as flags, never copied.
#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace mp::ag {

// Gradient of the stored left operand A from G (..., M, N) and the stored B.
static Tensor grad_left(const Tensor& g, const Tensor& b, bool ta, bool tb, const Shape& a_shape) {
  // d op(A) = G op(B)^T: op(B)^T is B itself when tb, else B read transposed.
  // When ta, A is stored as (K, M) and its gradient is the transpose op(B) G^T.
  Tensor ga = ta ? ops::matmul(b, g, tb, true)     // (..., K, M)
                 : ops::matmul(g, b, false, !tb);  // (..., M, K)
  return ga.shape() == a_shape ? ga : ops::sum_to(ga, a_shape);  // A shared by the batch: sum over it
}

// Gradient of the stored right operand B from the stored A and G (..., M, N).
static Tensor grad_right(const Tensor& a, const Tensor& g, bool ta, bool tb, const Shape& b_shape) {
  bool shared = b_shape.size() == 2 && g.dim() > 2;
  if (shared && !ta) {
    // B is one matrix shared by every batch entry: its gradient sums over
    // the batch. Flatten the rows of A (..., M, K) -> (R, K) and of
    // G -> (R, N) and do it as ONE GEMM over all R rows.
    Tensor a2 = a.reshape({-1, a.size(-1)});  // (R, K)
    Tensor g2 = g.reshape({-1, g.size(-1)});  // (R, N)
    return tb ? ops::matmul(g2, a2, true, false)   // (N, K) = G^T A
              : ops::matmul(a2, g2, true, false);  // (K, N) = A^T G
  }
  // d op(B) = op(A)^T G; when tb, B's gradient is its transpose G^T op(A).
  Tensor gb = tb ? ops::matmul(g, a, true, ta)     // (..., N, K)
                 : ops::matmul(a, g, !ta, false);  // (..., K, N)
  return gb.shape() == b_shape ? gb : ops::sum_to(gb, b_shape);
}

Variable matmul(const Variable& a, const Variable& b, bool ta, bool tb) {
  bool need_a = needs_grad(a), need_b = needs_grad(b);
  Tensor keep_a = need_b ? a.value() : Tensor();  // only dB needs A
  Tensor keep_b = need_a ? b.value() : Tensor();  // only dA needs B
  Shape sa = a.shape(), sb = b.shape();
  return make_result(ops::matmul(a.value(), b.value(), ta, tb), "matmul", {a, b},
                     [=](const Tensor& g, std::span<Tensor> gin) {
                       if (need_a) gin[0] = grad_left(g, keep_b, ta, tb, sa);
                       if (need_b) gin[1] = grad_right(keep_a, g, ta, tb, sb);
                     });
}

// y = x W^T + b  (W (out, in), torch.nn.Linear)  or  y = x W + b  (W (in, out),
// GPT-2's Conv1D). x (..., in) is flattened to N = B*T rows so that every
// product is one 2-D GEMM:
//   dx (N, in) = g W    or  g W^T
//   dW (out, in) = g^T x  or  (in, out) = x^T g      -- one GEMM over all N rows
//   db (out) = sum of g over the N rows
Variable linear(const Variable& x, const Variable& w, const Variable& b, bool w_in_out) {
  if (w.dim() != 2) fail("linear: weight must be 2-D, got {}", shape_str(w.shape()));
  int64_t in = w_in_out ? w.size(0) : w.size(1);
  int64_t out = w_in_out ? w.size(1) : w.size(0);
  if (x.dim() < 1 || x.size(-1) != in)
    fail("linear: input {} does not match weight {}{}", shape_str(x.shape()), shape_str(w.shape()),
         w_in_out ? " (in, out)" : " (out, in)");
  if (b.defined() && b.shape() != Shape{out})
    fail("linear: bias {} does not match {} outputs", shape_str(b.shape()), out);

  bool need_x = needs_grad(x), need_w = needs_grad(w), need_b = needs_grad(b);
  bool tw = !w_in_out;  // read (out, in) transposed as (in, out)
  // Under autocast (autograd/autocast.h) the GEMMs read bf16 copies (a
  // frozen weight's from the scope's cache, if any); the backward uses the
  // choice made here, whatever scope it runs in.
  const DType dt = autocast_dtype();
  CastCache* cache = autocast_cache();
  auto compute = [dt, cache](const Tensor& t) { return gemm_operand(t, dt, cache); };
  Tensor x2 = compute(x.value().reshape({-1, in}));   // (N, in)
  Tensor y2 = ops::matmul(x2, compute(w.value()), false, tw);  // (N, out) f32
  // Then the bias, added in place (broadcast over rows): on the CPU backend
  // this beat pre-filling y with the bias and a GEMM with beta = 1, whose
  // strided broadcast copy costs more than the add.
  if (b.defined()) ops::axpby(1.f, b.value().to(y2.dtype()), 1.f, y2);
  Shape y_shape = x.shape();
  y_shape.back() = out;

  Tensor keep_x = need_w ? x2 : Tensor();         // only dW needs x (its bf16 copy under autocast)
  Tensor keep_w = need_x ? w.value() : Tensor();  // only dx needs W (alive anyway; cast again unless cached)
  Shape x_shape = x.shape();
  return make_result(y2.view(y_shape), "linear", {x, w, b}, [=](const Tensor& g, std::span<Tensor> gin) {
    Tensor g2 = g.reshape({-1, out});  // (N, out)
    Tensor gc = need_x || need_w ? compute(g2) : Tensor();
    if (need_x) gin[0] = ops::matmul(gc, compute(keep_w), false, !tw).reshape(x_shape);
    if (need_w) gin[1] = tw ? ops::matmul(gc, keep_x, true, false)   // (out, in) = g^T x
                            : ops::matmul(keep_x, gc, true, false);  // (in, out) = x^T g
    if (need_b) gin[2] = ops::sum(g2, 0);                            // (out)
  });
}

}  // namespace mp::ag
