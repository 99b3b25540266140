// Tensor views, the memory ledger and bf16 rounding.
#include <doctest/doctest.h>

#include "engine/backend.h"
#include "engine/dtype.h"
#include "engine/error.h"
#include "engine/memory.h"
#include "engine/tensor.h"
#include "tests/engine/reference.h"

using namespace mp;
using mp::test::values;

static Tensor arange(int64_t n, const Shape& shape) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float(i);
  return Tensor::from_vector(v, shape);
}

TEST_CASE("reshape and view keep the data, -1 is inferred") {
  Tensor t = arange(24, {2, 3, 4});
  Tensor r = t.reshape({4, -1});
  CHECK(r.shape() == Shape{4, 6});
  CHECK(r.storage() == t.storage());
  CHECK(r.at({3, 5}) == 23);
  CHECK_THROWS_WITH_AS(t.view({5, 5}), "cannot view shape (2, 3, 4) as (5, 5)", Error);
  CHECK_THROWS_AS(t.view({-1, -1}), Error);
}

TEST_CASE("transpose and permute swap strides without copying") {
  Tensor t = arange(6, {2, 3});
  Tensor tt = t.transpose(0, 1);
  CHECK(tt.shape() == Shape{3, 2});
  CHECK(!tt.is_contiguous());
  CHECK(tt.at({2, 1}) == t.at({1, 2}));
  CHECK(values(tt.contiguous()) == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK_THROWS_WITH_AS(tt.view({6}), "view of a non-contiguous tensor of shape (3, 2); use reshape", Error);
  CHECK(values(tt.reshape({6})) == std::vector<double>{0, 3, 1, 4, 2, 5});

  Tensor u = arange(24, {2, 3, 4});
  Tensor p = u.permute({2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.at({3, 1, 2}) == u.at({1, 2, 3}));
  CHECK_THROWS_WITH_AS(u.permute({0, 1}), "permute of shape (2, 3, 4) needs 3 axes, got 2", Error);
}

TEST_CASE("narrow, select, unsqueeze, expand") {
  Tensor t = arange(12, {3, 4});
  Tensor n = t.narrow(1, 1, 2);
  CHECK(n.shape() == Shape{3, 2});
  CHECK(values(n.contiguous()) == std::vector<double>{1, 2, 5, 6, 9, 10});
  CHECK_THROWS_WITH_AS(t.narrow(1, 3, 2), "narrow [3, 5) out of range for axis 1 of shape (3, 4)", Error);

  Tensor s = t.select(0, 2);
  CHECK(s.shape() == Shape{4});
  CHECK(values(s) == std::vector<double>{8, 9, 10, 11});
  Tensor c = t.select(1, 1);
  CHECK(values(c.contiguous()) == std::vector<double>{1, 5, 9});

  Tensor u = t.unsqueeze(1);
  CHECK(u.shape() == Shape{3, 1, 4});
  CHECK(u.is_contiguous());
  CHECK(t.unsqueeze(-1).shape() == Shape{3, 4, 1});

  Tensor row = arange(4, {4});
  Tensor e = row.expand({3, 4});
  CHECK(e.strides() == Shape{0, 1});
  CHECK(values(e.contiguous()) == std::vector<double>{0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3});
  CHECK_THROWS_WITH_AS(t.expand({3, 5}), "cannot expand shape (3, 4) to (3, 5)", Error);
}

TEST_CASE("contiguous of a contiguous tensor is itself; clone copies") {
  Tensor t = arange(6, {2, 3});
  CHECK(t.contiguous().storage() == t.storage());
  Tensor c = t.clone();
  CHECK(c.storage() != t.storage());
  c.set({0, 0}, 42);
  CHECK(t.at({0, 0}) == 0);
}

TEST_CASE("broadcast_shapes follows NumPy and names both shapes") {
  CHECK(broadcast_shapes({3, 1, 5}, {4, 1}) == Shape{3, 4, 5});
  CHECK_THROWS_WITH_AS(broadcast_shapes({2, 3}, {4}), "shapes (2, 3) and (4) do not broadcast", Error);
}

TEST_CASE("dtype conversions through copy") {
  Tensor f = Tensor::from_vector(std::vector<float>{1.5f, -2.25f, 3.f}, {3});
  CHECK(values(f.to(DType::f64)) == std::vector<double>{1.5, -2.25, 3});
  CHECK(values(f.to(DType::bf16)) == std::vector<double>{1.5, -2.25, 3});
  CHECK(values(f.to(DType::i32)) == std::vector<double>{1, -2, 3});
  Tensor i = Tensor::from_vector(std::vector<int32_t>{7, -8}, {2});
  CHECK(values(i.to(DType::f32)) == std::vector<double>{7, -8});
  CHECK(values(i.to(DType::bf16).to(DType::f64)) == std::vector<double>{7, -8});
}

TEST_CASE("the ledger counts bytes per tag, current and peak") {
  Ledger& L = Ledger::instance();
  L.reset_peaks();
  const size_t opt0 = L.current(Tag::optimizer), total0 = L.current_total();
  {
    TagScope scope(Tag::optimizer);
    CHECK(current_tag() == Tag::optimizer);
    Tensor a = Tensor::zeros({256});  // 1024 bytes
    CHECK(a.tag() == Tag::optimizer);
    CHECK(L.current(Tag::optimizer) == opt0 + 1024);
    {
      Tensor b = Tensor::zeros({128}, DType::f64);  // 1024 bytes
      CHECK(L.current(Tag::optimizer) == opt0 + 2048);
    }
    CHECK(L.current(Tag::optimizer) == opt0 + 1024);
    CHECK(L.peak(Tag::optimizer) >= opt0 + 2048);
    CHECK(L.peak_total() >= total0 + 2048);
  }
  CHECK(current_tag() == Tag::activations);
  CHECK(L.current(Tag::optimizer) == opt0);
  L.reset_peaks();
  CHECK(L.peak(Tag::optimizer) == opt0);
  CHECK(L.peak_total() == L.current_total());
}

TEST_CASE("retag moves bytes between tags") {
  Ledger& L = Ledger::instance();
  Tensor w = Tensor::zeros({100}, DType::f32, kCPU, Tag::weights);
  const size_t weights = L.current(Tag::weights), adapter = L.current(Tag::adapter);
  w.storage()->retag(Tag::adapter);
  CHECK(w.tag() == Tag::adapter);
  CHECK(L.current(Tag::weights) == weights - 400);
  CHECK(L.current(Tag::adapter) == adapter + 400);
  CHECK(tag_name(Tag::adapter) == "adapter");
}

TEST_CASE("bf16 rounds to nearest, ties to even") {
  auto bits = [](float f) { return float_to_bf16(f).bits; };
  CHECK(bits(1.0f) == 0x3f80);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 (0x3f80) and 1.0078125 (0x3f81): ties to even -> 0x3f80.
  CHECK(bits(std::bit_cast<float>(0x3f808000u)) == 0x3f80);
  // Halfway above an odd mantissa rounds up to even: 0x3f81 8000 -> 0x3f82.
  CHECK(bits(std::bit_cast<float>(0x3f818000u)) == 0x3f82);
  // Just above halfway rounds up, just below rounds down.
  CHECK(bits(std::bit_cast<float>(0x3f808001u)) == 0x3f81);
  CHECK(bits(std::bit_cast<float>(0x3f807fffu)) == 0x3f80);
  // Rounding carries into the exponent: the largest mantissa rounds up to the next power of two.
  CHECK(bits(std::bit_cast<float>(0x3fffffffu)) == 0x4000);
  CHECK(bits(-2.0f) == 0xc000);
  // NaN stays NaN; infinity stays infinity.
  CHECK(std::isnan(bf16_to_float(float_to_bf16(NAN))));
  CHECK(bits(INFINITY) == 0x7f80);
  CHECK(bf16_to_float(bf16{0x3fc0}) == 1.5f);
}

// No test in this program touches the GPU before this one (it links no CUDA backend).
TEST_CASE("a backend loader runs at the first use of its device, and only then") {
  static int calls = 0;
  register_backend_loader(DeviceType::cuda, []() -> Backend* {
    ++calls;
    return nullptr;  // as cuda/ does on a machine without a GPU
  });
  CHECK(calls == 0);
  CHECK_FALSE(has_backend(DeviceType::cuda));
  CHECK(calls == 1);
  CHECK_THROWS_WITH_AS(backend(kCUDA), doctest::Contains("no backend for device cuda"), Error);
  CHECK(calls == 1);
}
