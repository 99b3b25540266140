// A Linear with its weight in NF4 (QLoRA's frozen base): the same outputs and
// input/bias gradients as an f32 Linear holding the dequantized weight, the
// input gradient against finite differences, the bytes the ledger sees, and
// the refusal to quantize a trainable weight; NF4 weights in safetensors files
// (nn/nf4_weights.h) and their bad sizes.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "nn/linear.h"
#include "nn/nf4_weights.h"
#include "tests/support/temp_dir.h"

using namespace mp;
using namespace mp::nn;

namespace {

Tensor random_tensor(const Shape& shape, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> v(size_t(shape_numel(shape)));
  for (float& x : v) x = n(gen);
  return Tensor::from_vector(v, shape);
}

void check_close(const Tensor& got, const Tensor& want, double tol) {
  REQUIRE(got.shape() == want.shape());
  std::vector<float> g = got.to_floats(), w = want.to_floats();
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::abs(double(g[i]) - w[i]) / (1 + std::abs(w[i])));
  CHECK(worst <= tol);
}

// sum(y * r) for fixed random r: a scalar whose gradient reaches every output.
Variable weighted_sum(const Variable& y, uint32_t seed) {
  return ag::sum_all(ag::mul(y, Variable(random_tensor(y.shape(), seed))));
}

}  // namespace

TEST_CASE("NF4 Linear = f32 Linear on the dequantized weight: output, dx and db, both layouts") {
  for (Layout layout : {Layout::torch, Layout::conv1d}) {
    INFO("layout " << (layout == Layout::torch ? "torch" : "conv1d"));
    const int64_t in = 96, out = 80;
    Linear q(in, out, true, layout, 11);
    q.weight.set_requires_grad(false);
    q.quantize_nf4();
    REQUIRE(q.nf4_weight());
    CHECK(!q.weight.defined());
    CHECK(q.nf4_weight()->shape == Shape{out, in});  // (out, in) whatever the layout
    for (const auto& [name, p] : q.named_parameters()) CHECK(name != "weight");

    Variable w_ref(nf4_dequantize(*q.nf4_weight()));                       // (out, in)
    Variable b_ref(q.bias.value().clone(), true);
    Tensor xv = random_tensor({2, 3, in}, 5);
    Variable x(xv.clone(), true), x_ref(xv.clone(), true);
    Variable y = q.forward(x), y_ref = ag::linear(x_ref, w_ref, b_ref);  // (2, 3, out)
    check_close(y.value(), y_ref.value(), 1e-5);
    weighted_sum(y, 6).backward();
    weighted_sum(y_ref, 6).backward();
    check_close(x.grad(), x_ref.grad(), 1e-5);
    check_close(q.bias.grad(), b_ref.grad(), 1e-5);
  }
}

TEST_CASE("NF4 Linear: the input gradient against central differences") {
  // y is linear in x, so a finite difference is exact up to f32 rounding.
  Linear q(70, 50, false, Layout::torch, 3);
  q.weight.set_requires_grad(false);
  q.quantize_nf4();
  Tensor x0 = random_tensor({4, 70}, 8);
  Variable x(x0.clone(), true);
  weighted_sum(q.forward(x), 9).backward();
  const float eps = 0.5f;
  for (int64_t i : {0, 13, 69, 140, 279}) {
    auto loss_at = [&](float delta) {
      Tensor xs = x0.clone();
      xs.view({-1}).set({i}, double(x0.view({-1}).at({i})) + delta);
      return weighted_sum(q.forward(Variable(xs)), 9).item();
    };
    const double numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
    const double analytic = x.grad().view({-1}).at({i});
    INFO("element " << i);
    CHECK(analytic == doctest::Approx(numeric).epsilon(1e-3));
  }
}

TEST_CASE("NF4 Linear: the ledger's weights tag holds the packed bytes and constants") {
  Ledger& ledger = Ledger::instance();
  const size_t before = ledger.current(Tag::weights);
  Linear q(768, 768, false, Layout::conv1d, 1);
  CHECK(ledger.current(Tag::weights) - before == size_t(768 * 768 * 4));
  q.weight.set_requires_grad(false);
  q.quantize_nf4();
  CHECK(ledger.current(Tag::weights) - before == q.nf4_weight()->nbytes());
  CHECK(q.nf4_weight()->nbytes() == size_t(768 * 768 / 2 + 768 * 768 / 64 + 4 * 36));
}

TEST_CASE("NF4 Linear: a trainable weight is refused") {
  Linear q(8, 4, true, Layout::torch, 1);
  CHECK_THROWS_WITH_AS(q.quantize_nf4(),
                       "Linear(8, 4): a trainable weight cannot be stored in nf4 (NF4 is for a frozen base; freeze it "
                       "first)",
                       Error);
  CHECK(q.weight.defined());
}

TEST_CASE("NF4 weights in safetensors: a round trip, and a file claiming NF4 data of the wrong size") {
  mp::test::TempDir d("nf4_weights");
  Nf4Tensor q = nf4_quantize(random_tensor({6, 70}, 4));  // 420 values: 210 bytes, 7 blocks, 1 group
  std::vector<std::pair<std::string, Tensor>> good;
  nn::append_nf4(good, "w", q);
  nn::save_safetensors(d / "good.safetensors", good);
  Nf4Tensor back = nn::load_nf4(nn::SafetensorsFile::open(d / "good.safetensors"), "w", {6, 70});
  CHECK(back.packed.to_floats() == q.packed.to_floats());
  CHECK(back.absmax.to_floats() == q.absmax.to_floats());
  CHECK(back.offset == q.offset);
  Linear l(70, 6, false, Layout::torch, 1);
  l.weight.set_requires_grad(false);
  l.set_nf4_weight(std::make_shared<const Nf4Tensor>(back));
  CHECK_THROWS_WITH_AS(l.set_nf4_weight(std::make_shared<const Nf4Tensor>(nf4_quantize(random_tensor({70, 6}, 4)))),
                       "Linear(70, 6): an nf4 weight must be (6, 70), got (70, 6)", Error);

  auto bad = [&](const char* key, Tensor t) {
    std::vector<std::pair<std::string, Tensor>> v = good;
    for (auto& [k, x] : v)
      if (k == key) x = t;
    nn::save_safetensors(d / "bad.safetensors", v);
    return nn::SafetensorsFile::open(d / "bad.safetensors");
  };
  const std::string path = d / "bad.safetensors";
  CHECK_THROWS_WITH_AS(nn::load_nf4(bad("w.packed", Tensor::zeros({209}, DType::u8)), "w", {6, 70}),
                       (path + ": NF4 tensor 'w.packed' holds 209 elements (209), but a (6, 70) matrix needs 210").c_str(),
                       Error);
  CHECK_THROWS_WITH_AS(nn::load_nf4(bad("w.absmax", Tensor::zeros({8}, DType::u8)), "w", {6, 70}),
                       (path + ": NF4 tensor 'w.absmax' holds 8 elements (8), but a (6, 70) matrix needs 7").c_str(),
                       Error);
  CHECK_THROWS_WITH_AS(nn::load_nf4(bad("w.packed", Tensor::zeros({210})), "w", {6, 70}),
                       (path + ": NF4 tensor 'w.packed' is F32, expected U8").c_str(), Error);
  CHECK_THROWS_AS(nn::load_nf4(nn::SafetensorsFile::open(d / "good.safetensors"), "v", {6, 70}), Error);  // no such key
  // The same bytes read as a larger matrix: the sizes no longer fit.
  CHECK_THROWS_AS(nn::load_nf4(nn::SafetensorsFile::open(d / "good.safetensors"), "w", {7, 70}), Error);
}
