// Elementwise ops, reductions, sum_to and cat against naive references,
// on contiguous, transposed and broadcast inputs.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/backend.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "tests/engine/reference.h"

using namespace mp;
using namespace mp::test;

// Reference: element (i0, i1, ...) of a broadcast result, read through index arithmetic.
static double at_broadcast(const std::vector<double>& v, const Shape& shape, const Shape& out, int64_t flat) {
  // unravel flat in out, then ravel into shape with broadcasting
  std::vector<int64_t> idx(out.size());
  for (int d = int(out.size()) - 1; d >= 0; --d) {
    idx[d] = flat % out[d];
    flat /= out[d];
  }
  int64_t off = 0, stride = 1;
  for (int d = int(shape.size()) - 1; d >= 0; --d) {
    int64_t i = idx[d + out.size() - shape.size()];
    off += (shape[d] == 1 ? 0 : i) * stride;
    stride *= shape[d];
  }
  return v[size_t(off)];
}

TEST_CASE("binary ops broadcast, any strides, f32 and f64") {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor a = rand_tensor({3, 1, 5}, 1, dt);
    Tensor b = rand_tensor({4, 5}, 2, dt, 0.5, 2);
    const Shape out{3, 4, 5};
    std::vector<double> va = values(a), vb = values(b);
    for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
      Tensor c = ops::binary(op, a, b);
      CHECK(c.shape() == out);
      std::vector<double> want(60);
      for (int64_t i = 0; i < 60; ++i) {
        double x = at_broadcast(va, a.shape(), out, i), y = at_broadcast(vb, b.shape(), out, i);
        want[size_t(i)] = op == BinaryOp::add ? x + y : op == BinaryOp::sub ? x - y : op == BinaryOp::mul ? x * y : x / y;
      }
      check_close(c, want, dt == DType::f32 ? 1e-6 : 1e-14, 1e-6);
    }
  }
  CHECK_THROWS_WITH_AS(ops::add(Tensor::zeros({2, 3}), Tensor::zeros({4})), "shapes (2, 3) and (4) do not broadcast",
                       Error);
}

TEST_CASE("binary on transposed and narrowed views") {
  Tensor a = rand_tensor({6, 7}, 3);
  Tensor at = a.transpose(0, 1);          // (7, 6), strides (1, 7)
  Tensor b = rand_tensor({7, 10}, 4).narrow(1, 2, 6);  // (7, 6), strides (10, 1)
  Tensor c = ops::mul(at, b);
  std::vector<double> want(42);
  for (int64_t i = 0; i < 7; ++i)
    for (int64_t j = 0; j < 6; ++j) want[size_t(i * 6 + j)] = a.at({j, i}) * b.at({i, j});
  check_close(c, want, 1e-6);
  // A large strided case that goes through the parallel path.
  Tensor big = rand_tensor({300, 257}, 5);
  Tensor bt = big.transpose(0, 1);
  Tensor sum = ops::add(bt, bt);
  std::vector<double> vb = values(big), ws(300 * 257);
  for (int64_t i = 0; i < 257; ++i)
    for (int64_t j = 0; j < 300; ++j) ws[size_t(i * 300 + j)] = 2 * vb[size_t(j * 257 + i)];
  check_close(sum, ws, 1e-6);
}

TEST_CASE("unary ops and their backward against finite differences") {
  for (UnaryOp op : {UnaryOp::neg, UnaryOp::exp, UnaryOp::log, UnaryOp::sqrt, UnaryOp::tanh, UnaryOp::relu,
                     UnaryOp::gelu, UnaryOp::square}) {
    const bool positive = op == UnaryOp::log || op == UnaryOp::sqrt;
    Tensor x = rand_tensor({4, 9}, 7, DType::f64, positive ? 0.2 : -3, 3).transpose(0, 1);  // strided
    Tensor y = ops::unary(op, x);
    auto f = [op](double v) {
      switch (op) {
        case UnaryOp::neg: return -v;
        case UnaryOp::exp: return std::exp(v);
        case UnaryOp::log: return std::log(v);
        case UnaryOp::sqrt: return std::sqrt(v);
        case UnaryOp::tanh: return std::tanh(v);
        case UnaryOp::relu: return v > 0 ? v : 0;
        case UnaryOp::gelu: return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        case UnaryOp::square: return v * v;
      }
      return 0.0;
    };
    std::vector<double> vx = values(x), want, gwant;
    for (double v : vx) want.push_back(f(v));
    check_close(y, want, 1e-12, 1e-12);

    const bool takes_y = op == UnaryOp::exp || op == UnaryOp::sqrt || op == UnaryOp::tanh;
    Tensor gy = rand_tensor({9, 4}, 8, DType::f64);
    Tensor gx = ops::unary_backward(op, takes_y ? y : x, gy);
    std::vector<double> vg = values(gy);
    for (size_t i = 0; i < vx.size(); ++i) {
      const double h = 1e-6;
      gwant.push_back(vg[i] * (f(vx[i] + h) - f(vx[i] - h)) / (2 * h));
    }
    check_close(gx, gwant, 1e-6, 1e-6);
  }
}

TEST_CASE("GELU is GPT-2's tanh approximation") {
  Tensor x = Tensor::from_vector(std::vector<float>{-1.f, 0.f, 1.f, 2.f}, {4});
  // 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))), computed by hand:
  check_close(ops::unary(UnaryOp::gelu, x), {-0.15880800939172324, 0, 0.8411919906082768, 1.954597694087775}, 1e-6);
}

TEST_CASE("axpby and scale") {
  Tensor a = rand_tensor({5, 3}, 9);
  Tensor out = rand_tensor({5, 3}, 10);
  std::vector<double> va = values(a), vo = values(out), want;
  for (size_t i = 0; i < va.size(); ++i) want.push_back(2 * va[i] - 0.5 * vo[i]);
  ops::axpby(2.f, a, -0.5f, out);
  check_close(out, want, 1e-6);
  // beta = 0 never reads out, even if it holds NaN.
  Tensor nan = Tensor::full({5, 3}, NAN);
  ops::axpby(3.f, a, 0.f, nan);
  std::vector<double> w3;
  for (double v : va) w3.push_back(3 * v);
  check_close(nan, w3, 1e-6);
  check_close(ops::scale(a, -1.f), [&] { std::vector<double> w; for (double v : va) w.push_back(-v); return w; }(), 0);
}

TEST_CASE("sum, mean, max over any axis, on strided input") {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor base = rand_tensor({4, 5, 6}, 11, dt);
    Tensor x = base.permute({2, 0, 1});  // (6, 4, 5), not contiguous
    std::vector<double> vb = values(base);
    auto X = [&](int64_t i, int64_t j, int64_t k) { return vb[size_t(j * 30 + k * 6 + i)]; };
    const int64_t dims[3] = {6, 4, 5};
    for (int axis = 0; axis < 3; ++axis) {
      Tensor s = ops::sum(x, axis), m = ops::max(x, axis, true), mu = ops::mean(x, axis - 3);
      Shape kept{6, 4, 5};
      kept[size_t(axis)] = 1;
      CHECK(m.shape() == kept);
      std::vector<double> ws, wm, wmu;
      for (int64_t i = 0; i < kept[0]; ++i)
        for (int64_t j = 0; j < kept[1]; ++j)
          for (int64_t k = 0; k < kept[2]; ++k) {
            double acc = 0, mx = -INFINITY;
            for (int64_t r = 0; r < dims[axis]; ++r) {
              double v = X(axis == 0 ? r : i, axis == 1 ? r : j, axis == 2 ? r : k);
              acc += v;
              mx = std::max(mx, v);
            }
            ws.push_back(acc);
            wm.push_back(mx);
            wmu.push_back(acc / double(dims[axis]));
          }
      check_close(s, ws, 1e-5);
      check_close(m, wm, 0);
      check_close(mu, wmu, 1e-6);
    }
  }
  // Large row and column sums (the parallel paths).
  Tensor big = rand_tensor({513, 300}, 12);
  std::vector<double> vb = values(big), rows(513, 0), cols(300, 0);
  for (int64_t i = 0; i < 513; ++i)
    for (int64_t j = 0; j < 300; ++j) {
      rows[size_t(i)] += vb[size_t(i * 300 + j)];
      cols[size_t(j)] += vb[size_t(i * 300 + j)];
    }
  check_close(ops::sum(big, 1), rows, 1e-4);
  check_close(ops::sum(big, 0), cols, 1e-4);
  double total = 0;
  for (double v : vb) total += v;
  check_close(ops::sum_all(big.transpose(0, 1)), {total}, 1e-3);
  CHECK(ops::sum_all(big).shape() == Shape{1});
}

TEST_CASE("sum_to undoes broadcasting") {
  Tensor g = rand_tensor({2, 3, 4}, 13);
  std::vector<double> vg = values(g);
  Tensor s = ops::sum_to(g, {3, 1});
  CHECK(s.shape() == Shape{3, 1});
  std::vector<double> want(3, 0);
  for (int64_t i = 0; i < 24; ++i) want[size_t((i / 4) % 3)] += vg[size_t(i)];
  check_close(s, want, 1e-5);
  Tensor b = ops::sum_to(g, {4});
  std::vector<double> wb(4, 0);
  for (int64_t i = 0; i < 24; ++i) wb[size_t(i % 4)] += vg[size_t(i)];
  check_close(b, wb, 1e-5);
  CHECK(ops::sum_to(g, {2, 3, 4}).shape() == Shape{2, 3, 4});
  CHECK_THROWS_AS(ops::sum_to(g, {5}), Error);
}

TEST_CASE("cat along any axis") {
  Tensor a = rand_tensor({2, 3}, 14), b = rand_tensor({2, 1}, 15), c = rand_tensor({2, 2}, 16);
  Tensor r = ops::cat({a, b, c}, 1);
  CHECK(r.shape() == Shape{2, 6});
  CHECK(r.at({1, 3}) == b.at({1, 0}));
  CHECK(r.at({0, 5}) == c.at({0, 1}));
  CHECK(r.at({1, 2}) == a.at({1, 2}));
  Tensor r0 = ops::cat({a, a.transpose(0, 1).transpose(0, 1)}, 0);
  CHECK(r0.shape() == Shape{4, 3});
  CHECK(r0.at({3, 1}) == a.at({1, 1}));
  CHECK_THROWS_WITH_AS(ops::cat({a, c}, 0), "cat along axis 0: shapes (2, 3) and (2, 2) do not match", Error);
}

TEST_CASE("arange: every row start .. start + T - 1") {
  Tensor pos = ops::arange({2, 3}, 5, kCPU);  // (B, T)
  CHECK(pos.dtype() == DType::i32);
  CHECK(values(pos) == std::vector<double>{5, 6, 7, 5, 6, 7});
}

// HF OPT's rule, by hand: cumsum(mask) * mask - 1 over the S keys, the last T, plus the offset.
TEST_CASE("mask_positions: the running count of kept keys, padding at offset - 1; a wrong mask is refused") {
  // row 0: left padding (0 0 1 1 1); row 1: none (1 1 1 1 1); row 2: a hole (1 0 1 1 0)
  Tensor mask = Tensor::from_vector(std::vector<int32_t>{0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0}, {3, 5});
  Tensor pos = ops::mask_positions(mask, 3, 2);  // (B, T): the last 3 keys, OPT's offset 2
  CHECK(pos.dtype() == DType::i32);
  CHECK(values(pos) == std::vector<double>{2, 3, 4, 4, 5, 6, 3, 4, 1});
  CHECK(values(ops::mask_positions(mask.to(kSim), 3, 2).to(kCPU)) == values(pos));
  CHECK_THROWS_WITH_AS(ops::mask_positions(mask, 6, 2), doctest::Contains("S >= T = 6"), Error);
}

TEST_CASE("clip_by_norm scales by max_norm / (norm + eps) only below 1, reading the norm in the kernel") {
  Tensor g = Tensor::from_vector(std::vector<float>{3, -4}, {2});
  Tensor norm = Tensor::from_vector(std::vector<double>{5}, {1});  // (1) f64
  ops::clip_by_norm(g, norm, 10.0, 1e-6);  // coef 2: untouched
  CHECK(values(g) == std::vector<double>{3, -4});
  ops::clip_by_norm(g, norm, 1.0, 1e-6);  // coef 1 / (5 + 1e-6), as axpby(float(coef)) does it
  const float coef = float(1.0 / (5.0 + 1e-6));
  CHECK(values(g) == std::vector<double>{double(3 * coef), double(-4 * coef)});
  ops::fill(norm, NAN);  // a NaN norm spreads to the gradients, as torch's clip_grad_norm_
  ops::clip_by_norm(g, norm, 1.0, 1e-6);
  CHECK(std::isnan(values(g)[0]));
}

TEST_CASE("add_sum_of_squares adds the squares in f64 to a running sum, for every float dtype") {
  Tensor sum = Tensor::zeros({1}, DType::f64);
  ops::add_sum_of_squares(Tensor::from_vector(std::vector<float>{1, -2, 3}, {3}), sum);
  CHECK(sum.item() == 14.0);  // 1 + 4 + 9
  ops::add_sum_of_squares(Tensor::from_vector(std::vector<double>{0.5, -1.5}, {2}), sum);
  CHECK(sum.item() == 16.5);  // + 0.25 + 2.25
  ops::add_sum_of_squares(Tensor::from_vector(std::vector<float>{0.5, -1.5}, {2}).to(DType::bf16), sum);
  CHECK(sum.item() == 19.0);  // bf16 holds both exactly
  // Past one block of 65,536: 200,003 elements of 0.1f, each squared in double.
  // Summing n doubles is exact to n * 2^-53 relative (about 2e-11 here).
  const float tenth = 0.1f;
  Tensor many = Tensor::full({200003}, tenth);
  Tensor s2 = Tensor::zeros({1}, DType::f64);
  ops::add_sum_of_squares(many, s2);
  CHECK(s2.item() == doctest::Approx(200003.0 * double(tenth) * double(tenth)).epsilon(1e-10));
  // A transposed view is summed as its values, and a wrong sum is refused.
  Tensor t = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3}).transpose(0, 1);
  Tensor s3 = Tensor::zeros({1}, DType::f64);
  ops::add_sum_of_squares(t, s3);
  CHECK(s3.item() == 91.0);
  CHECK_THROWS_AS(ops::add_sum_of_squares(t, Tensor::zeros({1})), Error);
}

TEST_CASE("fill on a strided view, max_abs_diff") {
  Tensor t = Tensor::zeros({3, 4});
  ops::fill(t.narrow(1, 1, 2), 7.0);
  CHECK(values(t) == std::vector<double>{0, 7, 7, 0, 0, 7, 7, 0, 0, 7, 7, 0});
  Tensor u = t.clone();
  u.set({2, 3}, -0.5);
  CHECK(ops::max_abs_diff(t, u) == 0.5);
}

#include "engine/cpu/fast_math.h"

TEST_CASE("fast_exp (the vectorisable f32 version) is accurate") {
  double worst_exp = 0;
  for (double x = -87; x <= 88; x += 0.01) {
    const float xf = float(x);
    worst_exp = std::max(worst_exp, std::abs(double(cpu::fast_exp(xf)) / std::exp(double(xf)) - 1));
  }
  CHECK(worst_exp < 1e-6);
  CHECK(cpu::fast_exp(-INFINITY) == 0.f);
  CHECK(cpu::fast_exp(-100.f) == 0.f);
  CHECK(cpu::fast_exp(100.f) == INFINITY);
  CHECK(cpu::fast_exp(0.f) == 1.f);
}

// f32 GELU and its derivative over [-20, 20] (where the vectorised form's
// exp overflows to inf for very negative inputs) against the tanh formula
// in double, within f32 round-off.
TEST_CASE("f32 GELU and its gradient follow the tanh formula in double") {
  const int64_t n = 40001;
  std::vector<float> xs(n);
  for (int64_t i = 0; i < n; ++i) xs[size_t(i)] = float(-20.0 + 0.001 * double(i));
  Tensor x = Tensor::from_vector(xs, {n});
  Tensor y = ops::unary(UnaryOp::gelu, x);
  Tensor g = Tensor::empty({n});
  backend(kCPU).unary_backward(UnaryOp::gelu, x, Tensor::full({n}, 1.0), g);
  double worst_y = 0, worst_g = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = double(xs[size_t(i)]), c = std::sqrt(2 / M_PI);
    const double t = std::tanh(c * (v + 0.044715 * v * v * v));
    const double ref_y = 0.5 * v * (1 + t);
    const double ref_g = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * c * (1 + 3 * 0.044715 * v * v);
    worst_y = std::max(worst_y, std::abs(double(y.data<float>()[i]) - ref_y) / (1 + std::abs(ref_y)));
    worst_g = std::max(worst_g, std::abs(double(g.data<float>()[i]) - ref_g) / (1 + std::abs(ref_g)));
  }
  CHECK(worst_y < 1e-6);
  CHECK(worst_g < 1e-6);
}

TEST_CASE("empty tensors go through every elementwise path") {
  Tensor a = Tensor::zeros({0, 3}), b = Tensor::zeros({3});
  CHECK(ops::add(a, b).shape() == Shape{0, 3});
  CHECK(ops::unary(UnaryOp::exp, a.transpose(0, 1)).shape() == Shape{3, 0});
  CHECK(values(ops::sum(a, 0)) == std::vector<double>{0, 0, 0});
  CHECK(ops::sum(a, 1).shape() == Shape{0});
  CHECK(ops::cat({a, Tensor::zeros({2, 3})}, 0).shape() == Shape{2, 3});
}
