// NF4 against bitsandbytes 0.50 (tests/fixtures/nf4/, made by
// reference/make_nf4_fixture.py): the code tables, the packed codes and
// the quantized absmax equal exactly, the dequantized values within 1e-6.
// Then the product with an NF4 weight against the same product on the
// dequantized f32 matrix, and its workspace: one panel, never the whole weight.
#include <doctest/doctest.h>

#include <cstring>

#include "engine/error.h"
#include "engine/nf4.h"
#include "engine/ops.h"
#include "nn/safetensors.h"
#include "tests/engine/reference.h"
#include "tests/support/env.h"

using namespace mp;
using namespace mp::test;

namespace {

nn::SafetensorsFile fixture() { return nn::SafetensorsFile::open(fixtures_dir() + "/nf4/nf4.safetensors"); }

std::vector<uint8_t> bytes(const Tensor& t) {
  const uint8_t* p = t.data<uint8_t>();
  return std::vector<uint8_t>(p, p + t.numel());
}

}  // namespace

TEST_CASE("nf4: the code tables are bitsandbytes'") {
  nn::SafetensorsFile f = fixture();
  std::vector<float> nf4 = f.load("nf4_code").to_floats(), dyn = f.load("dynamic_code").to_floats();
  REQUIRE(nf4.size() == 16);
  REQUIRE(dyn.size() == 256);
  for (size_t i = 0; i < 16; ++i) CHECK(nf4_code()[i] == nf4[i]);
  for (size_t i = 0; i < 256; ++i) {
    INFO("dynamic code " << i);
    CHECK(nf4_dynamic_code()[i] == dyn[i]);
  }
}

TEST_CASE("nf4: quantized bytes and absmax equal bitsandbytes', dequantized values within 1e-6") {
  nn::SafetensorsFile f = fixture();
  for (const char* name : {"small_odd", "rows", "many_blocks"}) {
    const std::string c = name;
    INFO("case " << c);
    Tensor w = f.load(c + ".input", DType::f32);
    Nf4Tensor q = nf4_quantize(w);
    CHECK(q.shape == w.shape());
    CHECK(bytes(q.packed) == bytes(f.load(c + ".packed", DType::u8)));
    CHECK(bytes(q.absmax) == bytes(f.load(c + ".absmax", DType::u8)));
    CHECK(q.offset == f.load(c + ".offset").to_floats()[0]);
    CHECK(q.nested_absmax.to_floats() == f.load(c + ".nested_absmax").to_floats());
    Tensor d = nf4_dequantize(q);
    CHECK(d.shape() == w.shape());
    check_close(d, values(f.load(c + ".dequantized")), 1e-6);
  }
}

TEST_CASE("nf4: bitsandbytes' bytes dequantize to bitsandbytes' values") {
  // Our dequantization alone, from their quantized tensors.
  nn::SafetensorsFile f = fixture();
  Nf4Tensor q;
  q.shape = {129, 129};
  q.packed = f.load("many_blocks.packed", DType::u8);
  q.absmax = f.load("many_blocks.absmax", DType::u8);
  q.nested_absmax = f.load("many_blocks.nested_absmax");
  q.offset = f.load("many_blocks.offset").to_floats()[0];
  check_close(nf4_dequantize(q), values(f.load("many_blocks.dequantized")), 1e-6);
}

TEST_CASE("nf4: the bytes a matrix costs") {
  Nf4Tensor q = nf4_empty({768, 2304}, kCPU, Tag::weights);
  const int64_t n = 768 * 2304, blocks = n / 64;
  CHECK(q.nbytes() == size_t(n / 2 + blocks + 4 * ((blocks + 255) / 256)));
  CHECK(double(q.nbytes()) / double(n * 4) < 0.13);
}

TEST_CASE("nf4_matmul equals the f32 product with the dequantized weight, both ways") {
  // Shapes: K not a multiple of 64 (blocks straddle rows), O large enough for
  // several panels when K is large.
  for (auto [O, K, N] : {std::tuple<int64_t, int64_t, int64_t>{37, 29, 5}, {3000, 700, 3}}) {
    INFO("W (" << O << ", " << K << "), N = " << N);
    Nf4Tensor w = nf4_quantize(rand_tensor({O, K}, 7));
    Tensor wd = nf4_dequantize(w);  // (O, K)
    Tensor x = rand_tensor({N, K}, 8), g = rand_tensor({N, O}, 9);
    check_close(nf4_matmul(x, w, true), values(ops::matmul(x, wd, false, true)), 1e-4, 1e-5);  // (N, O)
    check_close(nf4_matmul(g, w, false), values(ops::matmul(g, wd)), 1e-4, 1e-5);               // (N, K)
  }
}

TEST_CASE("nf4_matmul keeps one panel of workspace; the meta device counts the same") {
  const int64_t O = 3000, K = 700, N = 3;
  auto workspace_peak = [&](Device d) {
    Nf4Tensor w;
    Tensor x;
    {
      DeviceScope scope(d);
      w = d.is_cpu() ? nf4_quantize(rand_tensor({O, K}, 7)) : nf4_empty({O, K}, d, Tag::weights);
      x = Tensor::empty({N, K}, DType::f32, d);
    }
    Ledger::instance().reset_peaks();
    const size_t before = Ledger::instance().current(Tag::workspace, d);
    Tensor y = nf4_matmul(x, w, true);
    return Ledger::instance().peak(Tag::workspace, d) - before;
  };
  const size_t cpu = workspace_peak(kCPU), meta = workspace_peak(kMeta);
  CHECK(cpu == meta);
  CHECK(cpu > 0);
  CHECK(cpu < size_t(O * K * 4) / 2);  // a panel, not the whole f32 matrix
}

TEST_CASE("nf4: bad input is an error naming the shapes") {
  Nf4Tensor w = nf4_quantize(rand_tensor({4, 6}, 1));
  CHECK_THROWS_WITH_AS(nf4_matmul(rand_tensor({2, 5}, 2), w, true),
                       "nf4_matmul: input (2, 5) does not match the nf4 weight (4, 6)^T", Error);
  CHECK_THROWS_AS(nf4_quantize(Tensor::zeros({3}, DType::i32)), Error);
}
