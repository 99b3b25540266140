// Philox known answers, random fills, dropout, AdamW.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "engine/backend.h"
#include "engine/cpu/philox.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "tests/engine/reference.h"

using namespace mp;
using namespace mp::test;

TEST_CASE("Philox4x32-10 matches Random123's known-answer vectors") {
  // Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter[4] key[2] -> result[4].
  using philox::U32x4;
  auto run = [](U32x4 c, uint32_t k0, uint32_t k1) { return philox::philox4x32_10(c, k0, k1); };
  U32x4 r = run({{0, 0, 0, 0}}, 0, 0);
  CHECK(r.v[0] == 0x6627e8d5u);
  CHECK(r.v[1] == 0xe169c58du);
  CHECK(r.v[2] == 0xbc57ac4cu);
  CHECK(r.v[3] == 0x9b00dbd8u);
  r = run({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu);
  CHECK(r.v[0] == 0x408f276du);
  CHECK(r.v[1] == 0x41c83b0eu);
  CHECK(r.v[2] == 0xa20bc7c6u);
  CHECK(r.v[3] == 0x6d5451fdu);
  r = run({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u);
  CHECK(r.v[0] == 0xd16cfe09u);
  CHECK(r.v[1] == 0x94fdccebu);
  CHECK(r.v[2] == 0x5001e420u);
  CHECK(r.v[3] == 0x24126ea1u);
  // It is constexpr: usable at compile time (and so on a device).
  static_assert(philox::philox4x32_10({{0, 0, 0, 0}}, 0, 0).v[0] == 0x6627e8d5u);
}

TEST_CASE("uniform and normal fills: moments, determinism, views") {
  Tensor u = Tensor::empty({100003});
  ops::random(u, Distribution::uniform, -2, 3, 42);
  std::vector<double> vu = values(u);
  double mean = 0, lo = 1e9, hi = -1e9;
  for (double x : vu) {
    mean += x / double(vu.size());
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  CHECK(mean == doctest::Approx(0.5).epsilon(0.02));
  CHECK(lo >= -2);
  CHECK(hi < 3);

  Tensor n = Tensor::empty({200000});
  ops::random(n, Distribution::normal, 1, 2, 7);
  std::vector<double> vn = values(n);
  double m = 0, var = 0;
  for (double x : vn) m += x / double(vn.size());
  for (double x : vn) var += (x - m) * (x - m) / double(vn.size());
  CHECK(std::abs(m - 1) < 0.02);
  CHECK(std::abs(std::sqrt(var) - 2) < 0.02);

  // Same seed, same values; element i depends only on (seed, i), so a prefix matches.
  Tensor n2 = Tensor::empty({7});
  ops::random(n2, Distribution::normal, 1, 2, 7);
  check_close(n2, std::vector<double>(vn.begin(), vn.begin() + 7), 0);
  Tensor other = Tensor::empty({7});
  ops::random(other, Distribution::normal, 1, 2, 8);
  CHECK(ops::max_abs_diff(other, n2) > 0);
  // A strided view gets the values of its own row-major order.
  Tensor t = Tensor::zeros({4, 3});
  ops::random(t.transpose(0, 1), Distribution::uniform, 0, 1, 5);
  Tensor c = Tensor::empty({3, 4});
  ops::random(c, Distribution::uniform, 0, 1, 5);
  check_close(t.transpose(0, 1), values(c), 0);
  // bf16 fill.
  Tensor b = Tensor::empty({1000}, DType::bf16);
  ops::random(b, Distribution::normal, 0, 0.02, 1);
  for (double x : values(b)) CHECK(std::abs(x) < 0.2);
}

TEST_CASE("dropout keeps the mean, same seed gives the same mask, and it is its own backward") {
  const int64_t n = 200000;
  const float p = 0.3f;
  Tensor x = Tensor::full({n}, 1.0);
  Tensor y = ops::dropout(x, p, 123);
  std::vector<double> vy = values(y);
  double mean = 0;
  int64_t kept = 0;
  for (double v : vy) {
    mean += v / double(n);
    if (v != 0) {
      ++kept;
      CHECK(v == doctest::Approx(1 / 0.7));
    }
  }
  CHECK(std::abs(mean - 1) < 0.01);
  CHECK(std::abs(double(kept) / double(n) - 0.7) < 0.01);

  Tensor gy = rand_tensor({n}, 3);
  Tensor gx = ops::dropout(gy, p, 123);
  std::vector<double> vg = values(gy), vgx = values(gx);
  bool same_mask = true;  // gx_i = gy_i / (1 - p) where x was kept, 0 where it was dropped
  for (int64_t i = 0; i < n; ++i) {
    const double want = vy[size_t(i)] == 0 ? 0 : vg[size_t(i)] / (1 - double(p));
    same_mask = same_mask && std::abs(vgx[size_t(i)] - want) < 1e-5;
  }
  CHECK(same_mask);
  CHECK(ops::max_abs_diff(ops::dropout(x, p, 123), y) == 0);
  CHECK(ops::max_abs_diff(ops::dropout(x, p, 124), y) > 0);
  CHECK(ops::max_abs_diff(ops::dropout(x, 0.f, 5), x) == 0);
  CHECK_THROWS_AS(ops::dropout(x, 1.f, 5), Error);
}

TEST_CASE("AdamW: one and two steps against hand-computed numbers") {
  // PyTorch AdamW, lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
  Tensor p = Tensor::from_vector(std::vector<float>{1.f, -2.f, 0.5f}, {3});
  Tensor g = Tensor::from_vector(std::vector<float>{0.5f, -1.f, 0.f}, {3});
  Tensor m = Tensor::zeros({3}), v = Tensor::zeros({3});
  backend(kCPU).adamw(p, g, m, v, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1);
  // Step 1: p *= (1 - 0.001); m = 0.1 g; v = 0.001 g^2; mhat = g; vhat = g^2;
  // p -= 0.1 * g / (|g| + 1e-8)  ->  p -= 0.1 sign(g) (0 where g = 0).
  check_close(p, {0.999 - 0.1, -1.998 + 0.1, 0.4995}, 1e-6);
  check_close(m, {0.05, -0.1, 0}, 1e-7);
  check_close(v, {0.00025, 0.001, 0}, 0, 1e-4);  // 1 - 0.999f is 0.000999987 in f32
  // Step 2 with the same gradient: m = 0.19 g, v = 0.001999 g^2,
  // mhat = 0.19 g / 0.19 = g, vhat = 0.001999 g^2 / 0.001999 = g^2: again a step of 0.1 sign(g).
  std::vector<double> before = values(p);
  backend(kCPU).adamw(p, g, m, v, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 2);
  check_close(p, {before[0] * 0.999 - 0.1, before[1] * 0.999 + 0.1, before[2] * 0.999}, 1e-6);
  check_close(m, {0.095, -0.19, 0}, 1e-7);
  // A gradient that changes: step 2 with g2 = 2 g after step 1 from scratch, computed by hand.
  Tensor p2 = Tensor::from_vector(std::vector<float>{1.f}, {1}), m2 = Tensor::zeros({1}), v2 = Tensor::zeros({1});
  backend(kCPU).adamw(p2, Tensor::full({1}, 1.0), m2, v2, 0.01f, 0.9f, 0.999f, 1e-8f, 0.f, 1);  // p = 0.99
  backend(kCPU).adamw(p2, Tensor::full({1}, 3.0), m2, v2, 0.01f, 0.9f, 0.999f, 1e-8f, 0.f, 2);
  // m = 0.9*0.1 + 0.1*3 = 0.39, mhat = 0.39/0.19; v = 0.999*0.001 + 0.001*9 = 0.009999, vhat = 0.009999/0.001999
  const double mhat = 0.39 / 0.19, vhat = 0.009999 / 0.001999;
  check_close(p2, {0.99 - 0.01 * mhat / (std::sqrt(vhat) + 1e-8)}, 1e-6);
}

// Data parallelism computes rows of a batch in separate processes: the rows
// [first, first + count) of a (B, C) tensor, dropped with offset first * C,
// get the mask those rows get when the whole tensor is dropped (C = 7: the
// offsets are not multiples of Philox's 4 lanes).
TEST_CASE("dropout with an offset draws the mask of the same rows of a larger tensor") {
  const int64_t B = 6, C = 7;
  const float p = 0.5f;
  Tensor x = rand_tensor({B, C}, 11);
  Tensor whole = ops::dropout(x, p, 42);
  for (int64_t first : {1, 2, 3, 5}) {
    const int64_t count = std::min<int64_t>(2, B - first);
    Tensor rows = ops::dropout(x.narrow(0, first, count).contiguous(), p, 42, uint64_t(first * C));
    CHECK(ops::max_abs_diff(rows, whole.narrow(0, first, count).contiguous()) == 0);
  }
  CHECK(ops::max_abs_diff(ops::dropout(x.narrow(0, 1, 2).contiguous(), p, 42, 0), whole.narrow(0, 1, 2).contiguous()) > 0);
}

// The CPU dropout kernel makes its mask up to 64 elements at a time (vector
// code with AVX-512 or AVX2, only the blocks a short run needs): each
// element must still follow the scalar rule, lane i % 4 of
// philox::block(seed, i / 4), at offsets that split a batch of 64 and across
// block index 2^32 (where the counter's high word changes), for a long run
// and for short ones (an attention row's few keys).
TEST_CASE("dropout's mask is philox::dropout_keeps of each element's own draw") {
  const float p = 0.3f;
  const uint64_t seed = 0x1234567890abcdefull;
  for (int64_t n : {1000, 7, 33}) {  // not multiples of 64
    Tensor ones = Tensor::full({n}, 1.0);
    for (uint64_t offset : {uint64_t(0), uint64_t(3), uint64_t(61), (uint64_t(1) << 34) - 4 * 100 + 1}) {
      Tensor y = ops::dropout(ones, p, seed, offset);
      int64_t wrong = 0;
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t e = offset + uint64_t(i);
        wrong += y.data<float>()[i] != (philox::dropout_keeps(philox::block(seed, e / 4).v[e % 4], p) ? 1.f / (1.f - p) : 0.f);
      }
      CHECK_MESSAGE(wrong == 0, "n ", n, ", offset ", offset);
    }
  }
}
