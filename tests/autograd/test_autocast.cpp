// Mixed precision (autograd/autocast.h): under autocast, linear's output and
// gradients must equal exact maths (f64) on bf16-rounded operands, to f32
// accumulation error: that pins down which operands are rounded (x, W, the
// incoming gradient) and that the backward keeps the forward's choice. The
// saved input costs half the bytes.
#include "helpers.h"

#include "autograd/autocast.h"
#include "autograd/recompute.h"
#include "engine/error.h"

using namespace mp;
using namespace mp::ag;
using namespace mp::ag::test;

namespace {

// An f32 tensor of f64 values.
Tensor f32(const Tensor& t) { return t.to(DType::f32); }

// The values of t rounded to bf16, as f64 (exact).
Tensor rounded(const Tensor& t) { return t.to(DType::bf16).to(DType::f64); }

// max |a - b| / max |b|, b in f64.
double rel(const Tensor& a, const Tensor& b) {
  return ops::max_abs_diff(a.to(DType::f64), b) / ops::max_abs_diff(b, ops::scale(b, 0.f));
}

}  // namespace

TEST_CASE("autocast bf16: linear equals exact maths on bf16-rounded x, W and gradient") {
  for (bool w_in_out : {false, true}) {
    CAPTURE(w_in_out);
    const int64_t N = 24, in = 40, out = 56;
    Tensor x64 = rand64({2, N / 2, in}, 1), w64 = rand64(w_in_out ? Shape{in, out} : Shape{out, in}, 2),
           b64 = rand64({out}, 3), g64 = rand64({2, N / 2, out}, 4);
    Variable x(f32(x64), true), w(f32(w64), true), b(f32(b64), true);
    Variable y;
    {
      AutocastScope bf16(DType::bf16);
      y = linear(x, w, b, w_in_out);
    }
    y.backward(f32(g64));  // outside the scope: the backward must still round

    // The reference, in f64 on rounded operands.
    Tensor xr = rounded(x64).reshape({N, in}), wr = rounded(w64), gr = rounded(g64).reshape({N, out});
    Tensor y_ref = ops::add(ops::matmul(xr, wr, false, !w_in_out), b64);                 // (N, out)
    Tensor gx_ref = ops::matmul(gr, wr, false, w_in_out);                               // (N, in)
    Tensor gw_ref = w_in_out ? ops::matmul(xr, gr, true, false) : ops::matmul(gr, xr, true, false);
    Tensor gb_ref = ops::sum(g64.reshape({N, out}), 0);                                 // the bias sees the f32 g
    CHECK(y.value().dtype() == DType::f32);
    CHECK(rel(y.value().reshape({N, out}), y_ref) < 1e-6);
    CHECK(rel(x.grad().reshape({N, in}), gx_ref) < 1e-6);
    CHECK(rel(w.grad(), gw_ref) < 1e-6);
    CHECK(rel(b.grad(), gb_ref) < 1e-6);
    // ... and it is not simply the f32 result: rounding moved the values.
    Tensor y_exact = ops::add(ops::matmul(x64.reshape({N, in}), w64, false, !w_in_out), b64);
    CHECK(rel(y.value().reshape({N, out}), y_exact) > 1e-4);
  }
}

TEST_CASE("autocast bf16: a trained weight's linear saves its input in half the bytes") {
  Variable w(f32(rand64({256, 256}, 5)), true);
  auto saved_bytes = [&](DType precision) {
    const size_t before = Ledger::instance().current(Tag::activations);
    Variable x(f32(rand64({128, 256}, 6)), false);
    AutocastScope scope(precision);
    Variable y = linear(x, w, Variable());
    x = Variable();  // only the node's saved copy (if any) is left
    return Ledger::instance().current(Tag::activations) - before - y.value().nbytes();
  };
  CHECK(saved_bytes(DType::f32) == 128 * 256 * 4);
  CHECK(saved_bytes(DType::bf16) == 128 * 256 * 2);
}

TEST_CASE("autocast accepts f32 and bf16 only") {
  CHECK_THROWS_WITH_AS(AutocastScope(DType::f64), doctest::Contains("f32 or bf16"), mp::Error);
  {
    AutocastScope bf16(DType::bf16);
    CHECK(autocast_dtype() == DType::bf16);
  }
  CHECK(autocast_dtype() == DType::f32);
}

TEST_CASE("autocast bf16: a recomputed block replays in bf16 when backward runs outside the scope") {
  Tensor x64 = rand64({8, 16}, 20), w64 = rand64({16, 16}, 21);
  // x's and w's gradients through gelu(linear(x, w)), the block recomputed or not.
  auto grads = [&](bool recompute) {
    Variable x(f32(x64), true), w(f32(w64), true);
    auto block = [&w](const Vars& in) { return gelu(linear(in[0], w, Variable())); };
    Variable y;
    {
      AutocastScope bf16(DType::bf16);
      y = recompute ? ag::recompute(block, {x}) : block({x});
    }
    sum_all(y).backward();  // the replay happens here, outside the scope
    return std::pair{x.grad(), w.grad()};
  };
  auto [gx, gw] = grads(false);
  auto [rx, rw] = grads(true);
  CHECK(ops::max_abs_diff(rx, gx) == 0.0);
  CHECK(ops::max_abs_diff(rw, gw) == 0.0);
}
