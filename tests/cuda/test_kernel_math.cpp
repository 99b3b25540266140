// cuda/kernel_math.h on the host: the per-element and per-row maths the CUDA
// kernels run, checked against independent formulas and against the CPU
// backend (the reference). Runs on every build, with or without a GPU.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/kernel_math.h"
#include "engine/backend.h"
#include "engine/dtype.h"
#include "engine/tensor.h"

using namespace mp;

namespace {

Tensor cpu_uniform(const Shape& s, double lo, double hi, uint64_t seed) {
  Tensor t = Tensor::empty(s);
  backend(kCPU).random(t, Distribution::uniform, lo, hi, seed);
  return t;
}

}  // namespace

TEST_CASE("philox matches the Random123 known-answer vectors") {
  // philox4x32-10 from Random123's kat_vectors.
  auto r = philox::philox4x32_10(philox::U32x4{{0, 0, 0, 0}}, 0, 0);
  CHECK(r.v[0] == 0x6627e8d5u);
  CHECK(r.v[1] == 0xe169c58du);
  CHECK(r.v[2] == 0xbc57ac4cu);
  CHECK(r.v[3] == 0x9b00dbd8u);
  r = philox::philox4x32_10(philox::U32x4{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu,
                            0xffffffffu);
  CHECK(r.v[0] == 0x408f276du);
  CHECK(r.v[1] == 0x41c83b0eu);
  CHECK(r.v[2] == 0xa20bc7c6u);
  CHECK(r.v[3] == 0x6d5451fdu);
}

TEST_CASE("bf16 rounding matches engine/dtype.h") {
  std::mt19937 rng(7);
  std::vector<float> xs = {0.f, -0.f, 1.f, -1.f, 1.00390625f, 1.01171875f, 3.0e38f, 1e-40f, INFINITY, -INFINITY, NAN};
  for (int i = 0; i < 100000; ++i) {
    uint32_t u = rng();
    float f;
    std::memcpy(&f, &u, 4);
    xs.push_back(f);
  }
  for (float f : xs) {
    const uint16_t mine = kmath::bf16_round(f);
    CHECK(mine == float_to_bf16(f).bits);
    const float w = kmath::bf16_widen(mine);
    const float ref = bf16_to_float(bf16{mine});
    CHECK(std::memcmp(&w, &ref, 4) == 0);
  }
  // Ties go to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
  CHECK(kmath::bf16_widen(kmath::bf16_round(1.00390625f)) == 1.f);
  CHECK(kmath::bf16_widen(kmath::bf16_round(1.01171875f)) == 1.015625f);
}

TEST_CASE("gelu: x * sigmoid(2u) and a central difference") {
  for (double x = -6; x <= 6; x += 0.01) {
    const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    const double ref = x / (1 + std::exp(-2 * u));  // 0.5 (1 + tanh u) = sigmoid(2u)
    CHECK(kmath::gelu(x) == doctest::Approx(ref).epsilon(1e-12));
    CHECK(double(kmath::gelu(float(x))) == doctest::Approx(ref).epsilon(1e-6).scale(1.0));  // float cancels for x << 0
    const double h = 1e-5;
    const double fd = (kmath::gelu(x + h) - kmath::gelu(x - h)) / (2 * h);
    CHECK(kmath::gelu_grad(x) == doctest::Approx(fd).epsilon(1e-7));
  }
}

TEST_CASE("unary ops and their backward match the CPU backend") {
  Tensor x = cpu_uniform({1000}, 0.05, 3, 11);  // positive: log and sqrt are defined
  Tensor xs = cpu_uniform({1000}, -3, 3, 12);
  Tensor gy = cpu_uniform({1000}, -1, 1, 13);
  const UnaryOp ops[] = {UnaryOp::neg, UnaryOp::exp,  UnaryOp::log,  UnaryOp::sqrt,
                         UnaryOp::tanh, UnaryOp::relu, UnaryOp::gelu, UnaryOp::square};
  for (UnaryOp op : ops) {
    CAPTURE(int(op));
    const Tensor& in = (op == UnaryOp::log || op == UnaryOp::sqrt) ? x : xs;
    Tensor y = Tensor::empty({1000}), gx = Tensor::empty({1000});
    backend(kCPU).unary(op, in, y);
    // exp, sqrt, tanh take y in the backward; the others take x.
    const bool from_y = op == UnaryOp::exp || op == UnaryOp::sqrt || op == UnaryOp::tanh;
    backend(kCPU).unary_backward(op, from_y ? y : in, gy, gx);
    for (int64_t i = 0; i < 1000; ++i) {
      const float v = in.data<float>()[i];
      CHECK(kmath::unary_forward(op, v) == doctest::Approx(y.data<float>()[i]).epsilon(1e-6));
      const float saved = from_y ? y.data<float>()[i] : v;
      CHECK(kmath::unary_backward(op, saved, gy.data<float>()[i]) == doctest::Approx(gx.data<float>()[i]).epsilon(1e-6));
    }
  }
  CHECK(kmath::binary_op(BinaryOp::sub, 5.0, 3.0) == 2.0);
  CHECK(kmath::binary_op(BinaryOp::div, 3.f, 4.f) == 0.75f);
}

TEST_CASE("Philox draws match the CPU backend's random and dropout") {
  const int64_t n = 1003;  // not a multiple of 4
  for (uint64_t seed : {uint64_t(0), uint64_t(42), uint64_t(0x123456789abcdefull)}) {
    Tensor u = Tensor::empty({n}), z = Tensor::empty({n}, DType::f64);
    backend(kCPU).random(u, Distribution::uniform, -2, 3, seed);
    backend(kCPU).random(z, Distribution::normal, 0.5, 2, seed);
    double mean = 0, sq = 0;
    for (int64_t i = 0; i < n; ++i) {
      CHECK(float(kmath::random_uniform(seed, uint64_t(i), -2, 3)) == u.data<float>()[i]);
      const double zi = kmath::random_normal(seed, uint64_t(i), 0.5, 2);
      CHECK(zi == doctest::Approx(z.data<double>()[i]).epsilon(1e-14));
      mean += (zi - 0.5) / 2;
      sq += (zi - 0.5) * (zi - 0.5) / 4;
    }
    mean /= double(n);
    CHECK(std::fabs(mean) < 0.15);                       // about 5 standard errors
    CHECK(std::fabs(sq / double(n) - 1) < 0.2);
  }
  Tensor ones = Tensor::full({n}, 1.0), out = Tensor::empty({n});
  const float p = 0.3f;
  backend(kCPU).dropout(ones, p, 99, 0, out);
  int kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = kmath::dropout_keep(99, uint64_t(i), p);
    kept += keep;
    CHECK(out.data<float>()[i] == (keep ? kmath::dropout_scale(p) : 0.f));
  }
  CHECK(std::abs(kept - int(0.7 * n)) < 80);
  CHECK(kmath::dropout_scale(1.f) == 0.f);
}

TEST_CASE("adamw_update: the textbook formula and the CPU backend") {
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.1f;
  const int64_t n = 257;
  Tensor p = cpu_uniform({n}, -1, 1, 1), m = Tensor::zeros({n}), v = Tensor::zeros({n});
  std::vector<float> mp(p.to_floats()), mm(n, 0.f), mv(n, 0.f);
  std::vector<double> dp(mp.begin(), mp.end()), dm(n, 0), dv(n, 0);
  for (int64_t step = 1; step <= 5; ++step) {
    Tensor g = cpu_uniform({n}, -1, 1, 100 + uint64_t(step));
    backend(kCPU).adamw(p, g, m, v, lr, b1, b2, eps, wd, step);
    const kmath::AdamW c = kmath::adamw_coeffs(lr, b1, b2, eps, wd, step);
    for (int64_t i = 0; i < n; ++i) {
      const float gi = g.data<float>()[i];
      kmath::adamw_update(c, mp[i], gi, mm[i], mv[i]);
      // torch.optim.AdamW as written in its documentation, in double
      dp[i] -= double(lr) * wd * dp[i];
      dm[i] = b1 * dm[i] + (1.0 - b1) * gi;
      dv[i] = b2 * dv[i] + (1.0 - b2) * double(gi) * gi;
      const double mhat = dm[i] / (1 - std::pow(double(b1), double(step)));
      const double vhat = dv[i] / (1 - std::pow(double(b2), double(step)));
      dp[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    CHECK(mp[i] == doctest::Approx(p.data<float>()[i]).epsilon(1e-6));
    CHECK(mm[i] == doctest::Approx(m.data<float>()[i]).epsilon(1e-6));
    CHECK(mv[i] == doctest::Approx(v.data<float>()[i]).epsilon(1e-6));
    CHECK(double(mp[i]) == doctest::Approx(dp[i]).epsilon(1e-5));
  }
}

TEST_CASE("online softmax: merging pieces in any order gives max and sum of the row") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> U(-30, 30);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> x(1 + rng() % 500);
    for (float& e : x) e = U(rng);
    double m = -INFINITY, s = 0;
    for (float e : x) m = std::max(m, double(e));
    for (float e : x) s += std::exp(double(e) - m);
    // Split into pieces (as threads would), merge the pieces in a scrambled order.
    std::vector<kmath::MaxSum<float>> pieces(1 + rng() % 40);
    for (size_t i = 0; i < x.size(); ++i) pieces[i % pieces.size()] = kmath::softmax_push(pieces[i % pieces.size()], x[i]);
    std::shuffle(pieces.begin(), pieces.end(), rng);
    kmath::MaxSum<float> all;
    for (const kmath::MaxSum<float>& p : pieces) all = kmath::softmax_merge(p, all);
    CHECK(all.m == float(m));
    CHECK(all.s == doctest::Approx(s).epsilon(1e-5));
    CHECK(kmath::softmax_lse(all) == doctest::Approx(m + std::log(s)).epsilon(1e-6));
    kmath::MaxSum<double> all64;  // the f64 rows' version (gradient checks on the GPU)
    for (float e : x) all64 = kmath::softmax_push(all64, double(e));
    CHECK(kmath::softmax_lse(all64) == doctest::Approx(m + std::log(s)).epsilon(1e-13));
  }
  // Empty pieces (max -inf) merge without NaN.
  kmath::MaxSum<float> empty;
  kmath::MaxSum<float> e2 = kmath::softmax_merge(empty, empty);
  CHECK(e2.s == 0.f);
  CHECK(kmath::softmax_merge(empty, kmath::softmax_push(empty, 2.f)).s == 1.f);
}

TEST_CASE("layer-norm moments: Welford + merge against two passes and the CPU backend") {
  const int64_t N = 16, C = 771;
  Tensor x = cpu_uniform({N, C}, -4, 6, 5);
  Tensor y = Tensor::empty({N, C}), mean = Tensor::empty({N}), rstd = Tensor::empty({N});
  const float eps = 1e-5f;
  backend(kCPU).layer_norm(x, Tensor(), Tensor(), eps, y, mean, rstd);
  for (int64_t n = 0; n < N; ++n) {
    const float* row = x.data<float>() + n * C;
    double s = 0, v = 0;
    for (int64_t c = 0; c < C; ++c) s += row[c];
    const double mu = s / double(C);
    for (int64_t c = 0; c < C; ++c) v += (row[c] - mu) * (row[c] - mu);
    // Each of 32 "threads" takes a strided part of the row, then a tree merge.
    std::vector<kmath::Moments<float>> part(32);
    for (int64_t c = 0; c < C; ++c) part[size_t(c % 32)] = kmath::moments_push(part[size_t(c % 32)], row[c]);
    for (size_t w = 16; w > 0; w /= 2)
      for (size_t i = 0; i < w; ++i) part[i] = kmath::moments_merge(part[i], part[i + w]);
    CHECK(part[0].n == float(C));
    CHECK(part[0].mean == doctest::Approx(mu).epsilon(1e-6).scale(1e-6));
    CHECK(part[0].m2 == doctest::Approx(v).epsilon(1e-5));
    CHECK(part[0].mean == doctest::Approx(mean.data<float>()[n]).epsilon(1e-6).scale(1e-6));
    CHECK(kmath::moments_rstd(part[0], eps) == doctest::Approx(rstd.data<float>()[n]).epsilon(1e-6));
  }
}
