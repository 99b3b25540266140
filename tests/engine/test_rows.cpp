// Row-wise kernels: softmax, layer norm, embedding, cross-entropy, forward
// against naive references and backward against finite differences.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "engine/backend.h"
#include "engine/cpu/row_math.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "tests/engine/reference.h"

using namespace mp;
using namespace mp::test;

static double dot(const Tensor& a, const Tensor& b) {
  std::vector<double> va = values(a), vb = values(b);
  double s = 0;
  for (size_t i = 0; i < va.size(); ++i) s += va[i] * vb[i];
  return s;
}

TEST_CASE("row max: every length around the vector width, NaN skipped, the max anywhere") {
  for (int64_t n : {1, 15, 16, 31, 32, 33, 47, 64, 100, 1000}) {
    for (int64_t at : {int64_t(0), n / 2, n - 1}) {
      CAPTURE(n);
      CAPTURE(at);
      std::vector<float> x(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) x[size_t(i)] = float(-1000 + (i * 37) % 101);  // all below -899
      x[size_t(at)] = 7.5f;
      if (n > 2) x[size_t((at + 1) % n)] = NAN;
      CHECK(cpu::row_max(x.data(), n) == 7.5f);
    }
  }
  std::vector<float> all_nan(40, NAN);
  CHECK(cpu::row_max(all_nan.data(), 40) == -INFINITY);
}

TEST_CASE("softmax and log_softmax against a naive reference") {
  Tensor x = rand_tensor({3, 4, 7}, 1, DType::f32, -5, 5);
  std::vector<double> vx = values(x), ws, wl;
  for (int64_t r = 0; r < 12; ++r) {
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < 7; ++c) m = std::max(m, vx[size_t(r * 7 + c)]);
    for (int64_t c = 0; c < 7; ++c) s += std::exp(vx[size_t(r * 7 + c)] - m);
    for (int64_t c = 0; c < 7; ++c) {
      ws.push_back(std::exp(vx[size_t(r * 7 + c)] - m) / s);
      wl.push_back(vx[size_t(r * 7 + c)] - m - std::log(s));
    }
  }
  check_close(ops::softmax(x), ws, 1e-6);
  check_close(ops::log_softmax(x), wl, 1e-5);
  check_close(ops::softmax(x.transpose(0, 1)).transpose(0, 1), ws, 1e-6);  // strided input
}

TEST_CASE("softmax backward against finite differences (f64)") {
  for (bool log : {false, true}) {
    Tensor x = rand_tensor({3, 5}, 2, DType::f64, -2, 2);
    Tensor gy = rand_tensor({3, 5}, 3, DType::f64);
    Tensor y = log ? ops::log_softmax(x) : ops::softmax(x);
    Tensor gx = ops::softmax_backward(y, gy, log);
    auto loss = [&] { return dot(log ? ops::log_softmax(x) : ops::softmax(x), gy); };
    check_close(gx, numeric_grad(x, loss), 1e-7);
  }
}

TEST_CASE("layer norm forward against a naive reference") {
  Tensor x = rand_tensor({2, 3, 16}, 4, DType::f32, -3, 3);
  Tensor w = rand_tensor({16}, 5), b = rand_tensor({16}, 6);
  auto r = ops::layer_norm(x, w, b, 1e-5f);
  CHECK(r.mean.shape() == Shape{2, 3});
  std::vector<double> vx = values(x), vw = values(w), vb = values(b), want, wmean, wrstd;
  for (int64_t n = 0; n < 6; ++n) {
    double m = 0, v = 0;
    for (int64_t c = 0; c < 16; ++c) m += vx[size_t(n * 16 + c)] / 16;
    for (int64_t c = 0; c < 16; ++c) v += (vx[size_t(n * 16 + c)] - m) * (vx[size_t(n * 16 + c)] - m) / 16;
    double rs = 1 / std::sqrt(v + 1e-5);
    for (int64_t c = 0; c < 16; ++c) want.push_back((vx[size_t(n * 16 + c)] - m) * rs * vw[size_t(c)] + vb[size_t(c)]);
    wmean.push_back(m);
    wrstd.push_back(rs);
  }
  check_close(r.y, want, 1e-5);
  check_close(r.mean, wmean, 1e-6);
  check_close(r.rstd, wrstd, 1e-5, 1e-6);
  // Without bias.
  auto nb = ops::layer_norm(x, w, Tensor(), 1e-5f);
  std::vector<double> wnb;
  for (size_t i = 0; i < want.size(); ++i) wnb.push_back(want[i] - vb[i % 16]);
  check_close(nb.y, wnb, 1e-5);
  CHECK_THROWS_WITH_AS(ops::layer_norm(x, rand_tensor({8}, 1), b, 1e-5f),
                       "layer_norm: weight (8) should be (16) for input (2, 3, 16)", Error);
}

TEST_CASE("layer norm backward against finite differences (f64), gw/gb accumulate, undefined skipped") {
  const int64_t N = 70, C = 600;  // big enough for the parallel path
  Tensor x = rand_tensor({N, C}, 7, DType::f64, -2, 2);
  Tensor w = rand_tensor({C}, 8, DType::f64), b = rand_tensor({C}, 9, DType::f64);
  Tensor gy = rand_tensor({N, C}, 10, DType::f64);
  auto r = ops::layer_norm(x, w, b, 1e-5f);
  Tensor gx = Tensor::empty({N, C}, DType::f64);
  Tensor gw = Tensor::full({C}, 1.0, DType::f64), gb = Tensor::full({C}, 1.0, DType::f64);  // accumulate onto 1
  backend(kCPU).layer_norm_backward(gy, x, w, r.mean, r.rstd, gx, gw, gb);

  // gx: finite differences on a small sub-problem (3 rows) to keep the test fast.
  Tensor xs = x.narrow(0, 0, 3).contiguous(), gys = gy.narrow(0, 0, 3).contiguous();
  auto loss = [&] { return dot(ops::layer_norm(xs, w, b, 1e-5f).y, gys); };
  check_close(values(gx.narrow(0, 0, 3)), numeric_grad(xs, loss), 1e-6);
  // gw, gb: sums over rows of gy * norm and gy, plus the 1 they started at.
  std::vector<double> vx = values(x), vg = values(gy), vm = values(r.mean), vr = values(r.rstd);
  std::vector<double> ww(size_t(C), 1), wb(size_t(C), 1);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      ww[size_t(c)] += vg[size_t(n * C + c)] * (vx[size_t(n * C + c)] - vm[size_t(n)]) * vr[size_t(n)];
      wb[size_t(c)] += vg[size_t(n * C + c)];
    }
  check_close(gw, ww, 1e-9);
  check_close(gb, wb, 1e-9);

  // Only gw wanted.
  Tensor gw2 = Tensor::zeros({C}, DType::f64);
  backend(kCPU).layer_norm_backward(gy, x, w, r.mean, r.rstd, Tensor(), gw2, Tensor());
  for (double& v : ww) v -= 1;
  check_close(gw2, ww, 1e-9);
}

TEST_CASE("embedding and its scatter-add backward") {
  Tensor table = rand_tensor({10, 6}, 11);
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{3, 0, 9, 3, 3, 7}, {2, 3});
  Tensor out = ops::embedding(ids, table);
  CHECK(out.shape() == Shape{2, 3, 6});
  CHECK(out.at({1, 2, 4}) == table.at({7, 4}));
  CHECK(out.at({0, 0, 1}) == table.at({3, 1}));
  // bf16 table -> f32 rows.
  Tensor out16 = ops::embedding(ids, table.to(DType::bf16));
  CHECK(out16.dtype() == DType::f32);
  check_close(out16, values(out), 1e-2, 1e-2);

  Tensor gout = rand_tensor({6, 6}, 12);
  Tensor gtable = Tensor::zeros({10, 6});
  backend(kCPU).embedding_backward(ids.view({6}), gout, gtable, -1);
  std::vector<double> want(60, 0), vg = values(gout);
  const int ix[6] = {3, 0, 9, 3, 3, 7};
  for (int n = 0; n < 6; ++n)
    for (int c = 0; c < 6; ++c) want[size_t(ix[n] * 6 + c)] += vg[size_t(n * 6 + c)];
  check_close(gtable, want, 1e-6);
  // padding_idx 3: the three rows read at id 3 add nothing, the others as before.
  Tensor gpad = Tensor::zeros({10, 6});
  backend(kCPU).embedding_backward(ids.view({6}), gout, gpad, 3);
  for (int c = 0; c < 6; ++c) want[size_t(3 * 6 + c)] = 0;
  check_close(gpad, want, 1e-6);

  Tensor bad = Tensor::from_vector(std::vector<int32_t>{1, 10}, {2});
  CHECK_THROWS_WITH_AS(ops::embedding(bad, table),
                       "embedding: token id 10 (position 1) is out of range for a vocabulary of 10", Error);
  Tensor neg = Tensor::from_vector(std::vector<int32_t>{-1}, {1});
  CHECK_THROWS_AS(ops::embedding(neg, table), Error);
}

TEST_CASE("embedding backward with many repeated ids is race-free") {
  const int64_t N = 4000, C = 256;
  std::vector<int32_t> v(N);
  for (int64_t i = 0; i < N; ++i) v[size_t(i)] = int32_t(i % 3);
  Tensor ids = Tensor::from_vector(v, {N});
  Tensor gout = Tensor::full({N, C}, 1.0);
  Tensor g = Tensor::zeros({5, C});
  backend(kCPU).embedding_backward(ids, gout, g, -1);
  CHECK(g.at({0, 17}) == 1334);
  CHECK(g.at({1, 255}) == 1333);
  CHECK(g.at({2, 0}) == 1333);
  CHECK(g.at({4, 9}) == 0);
}

TEST_CASE("cross entropy against a naive log-softmax, and its backward") {
  const int64_t N = 6, V = 11;
  const int ignore = -100;
  Tensor logits = rand_tensor({N, V}, 13, DType::f32, -4, 4);
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{0, 10, ignore, 5, 5, 3}, {N});
  ops::CrossEntropyRows rows = ops::cross_entropy_rows(logits, targets, ignore);
  std::vector<double> vx = values(logits), want, want_lse, gwant;
  const int tg[N] = {0, 10, ignore, 5, 5, 3};
  const float gscale = 0.2f;
  for (int64_t n = 0; n < N; ++n) {
    double m = -INFINITY, s = 0;
    for (int64_t v = 0; v < V; ++v) m = std::max(m, vx[size_t(n * V + v)]);
    for (int64_t v = 0; v < V; ++v) s += std::exp(vx[size_t(n * V + v)] - m);
    const double lse = m + std::log(s);
    want.push_back(tg[n] == ignore ? 0 : lse - vx[size_t(n * V + tg[n])]);
    want_lse.push_back(tg[n] == ignore ? 0 : lse);
    for (int64_t v = 0; v < V; ++v)
      gwant.push_back(tg[n] == ignore ? 0 : gscale * (std::exp(vx[size_t(n * V + v)] - lse) - (v == tg[n] ? 1 : 0)));
  }
  check_close(rows.losses, want, 1e-5);
  check_close(rows.lse, want_lse, 1e-5);
  Tensor g = Tensor::empty({N, V});
  Tensor gs = Tensor::from_vector(std::vector<float>{gscale}, {1});  // (1)
  backend(kCPU).cross_entropy_backward(logits, targets, rows.lse, ignore, gs, g);
  check_close(g, gwant, 1e-6);

  Tensor bad = Tensor::from_vector(std::vector<int32_t>{0, 11, 0, 0, 0, 0}, {N});
  CHECK_THROWS_WITH_AS(ops::cross_entropy_rows(logits, bad, ignore),
                       "cross_entropy: target 11 (row 1) is out of range for 11 classes", Error);
}

TEST_CASE("inverse_target_count: 1 / the targets that count, 0 when none does") {
  Tensor some = Tensor::from_vector(std::vector<int32_t>{3, -100, 0, -100, 7}, {5});
  CHECK(ops::inverse_target_count(some, -100).item() == double(1.f / 3.f));
  Tensor none = Tensor::from_vector(std::vector<int32_t>{-100, -100}, {2});
  CHECK(ops::inverse_target_count(none, -100).item() == 0.0);  // the loss and its gradients are then 0, not 0/0
}

TEST_CASE("cross entropy on a large vocabulary stays finite") {
  const int64_t N = 8, V = 50257;
  Tensor logits = rand_tensor({N, V}, 14, DType::f32, -30, 30);
  std::vector<int32_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[size_t(i)] = int32_t(i * 6000);
  Tensor losses = ops::cross_entropy_rows(logits, Tensor::from_vector(t, {N}), -100).losses;
  for (double l : values(losses)) {
    CHECK(std::isfinite(l));
    CHECK(l >= 0);
  }
}
