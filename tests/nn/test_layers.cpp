// Layers against hand-computed values: Linear (both layouts and the adapter
// seam), Embedding, LayerNorm, Dropout, activations, cross-entropy, init.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <numbers>

#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "nn/activations.h"
#include "nn/recompute.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/init.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/rng.h"

using namespace mp;
using namespace mp::nn;

namespace {

Tensor tensor(std::vector<float> v, Shape s) { return Tensor::from_vector(v, s); }

void set_values(const Variable& v, const std::vector<float>& values) {
  Tensor(v.value()).copy_from(tensor(values, v.shape()));
}

const std::vector<float> kX = {0.5f, -1.f, 2.f, 1.5f, 0.25f, -0.75f};  // (2, 3)

// y[i][o] = sum_k x[i][k] * w(o, k) + b[o], in double.
std::vector<double> hand_linear(const std::vector<float>& x, int n, int in, int out,
                                const std::function<double(int, int)>& w, const std::vector<float>& b) {
  std::vector<double> y(size_t(n * out));
  for (int i = 0; i < n; ++i)
    for (int o = 0; o < out; ++o) {
      double s = b.empty() ? 0.0 : b[size_t(o)];
      for (int k = 0; k < in; ++k) s += double(x[size_t(i * in + k)]) * w(o, k);
      y[size_t(i * out + o)] = s;
    }
  return y;
}

void check_close(const Tensor& got, const std::vector<double>& want, double tol = 1e-5) {
  std::vector<float> g = got.to_floats();
  REQUIRE(g.size() == want.size());
  for (size_t i = 0; i < g.size(); ++i) CHECK(g[i] == doctest::Approx(want[i]).epsilon(tol));
}

}  // namespace

TEST_CASE("Linear, torch layout: weight (out, in)") {
  Linear fc(3, 4, true, Layout::torch);
  CHECK(fc.weight.shape() == Shape{4, 3});
  std::vector<float> w(12), b = {0.1f, -0.2f, 0.3f, -0.4f};
  for (int i = 0; i < 12; ++i) w[size_t(i)] = 0.1f * float(i) - 0.5f;
  set_values(fc.weight, w);
  set_values(fc.bias, b);
  Variable y = fc.forward(Variable(tensor(kX, {2, 3})));
  CHECK(y.shape() == Shape{2, 4});
  check_close(y.value(), hand_linear(kX, 2, 3, 4, [&](int o, int k) { return w[size_t(o * 3 + k)]; }, b));
}

TEST_CASE("Linear, conv1d layout: weight (in, out), leading batch axes") {
  Linear fc(3, 4, true, Layout::conv1d);
  CHECK(fc.weight.shape() == Shape{3, 4});
  std::vector<float> w(12), b = {1.f, 2.f, 3.f, 4.f};
  for (int i = 0; i < 12; ++i) w[size_t(i)] = 0.25f * float(i % 5) - 0.3f;
  set_values(fc.weight, w);
  set_values(fc.bias, b);
  Variable y = fc.forward(Variable(tensor(kX, {1, 2, 3})));
  CHECK(y.shape() == Shape{1, 2, 4});
  check_close(y.value(), hand_linear(kX, 2, 3, 4, [&](int o, int k) { return w[size_t(k * 4 + o)]; }, b));
}

TEST_CASE("Linear without bias; shape errors are mp::Error") {
  Linear fc(3, 2, false);
  CHECK_FALSE(fc.bias.defined());
  CHECK(fc.named_parameters().size() == 1);
  CHECK_THROWS_AS(fc.forward(Variable(Tensor::zeros({2, 4}))), Error);
}

TEST_CASE("Linear default init: torch = kaiming_uniform(a=sqrt 5), conv1d = N(0, 0.02)") {
  Linear fc(64, 32, true, Layout::torch, 123);
  double bound = 1.0 / std::sqrt(64.0);
  double wmax = 0, bmax = 0;
  for (float v : fc.weight.value().to_floats()) wmax = std::max(wmax, double(std::fabs(v)));
  for (float v : fc.bias.value().to_floats()) bmax = std::max(bmax, double(std::fabs(v)));
  CHECK(wmax <= bound);
  CHECK(wmax > 0.9 * bound);
  CHECK(bmax <= bound);
  Linear same(64, 32, true, Layout::torch, 123);
  CHECK(ops::max_abs_diff(fc.weight.value(), same.weight.value()) == 0.0);

  Linear c(64, 32, true, Layout::conv1d, 7);
  double sum = 0, sq = 0;
  auto w = c.weight.value().to_floats();
  for (float v : w) sum += v, sq += double(v) * v;
  double mean = sum / double(w.size()), std = std::sqrt(sq / double(w.size()) - mean * mean);
  CHECK(std::fabs(mean) < 0.003);
  CHECK(std == doctest::Approx(0.02).epsilon(0.1));
  for (float v : c.bias.value().to_floats()) CHECK(v == 0.f);
}

TEST_CASE("init: kaiming_uniform_ bound follows torch") {
  CHECK(init::kaiming_uniform_bound(100, 0.0) == doctest::Approx(std::sqrt(2.0) * std::sqrt(3.0 / 100)));
  CHECK(init::kaiming_uniform_bound(100, std::sqrt(5.0)) == doctest::Approx(0.1));
  Tensor w = Tensor::empty({8, 50});
  CHECK(init::fan_in(w) == 50);
  init::kaiming_uniform_(w, 0.0, 9);
  double bound = init::kaiming_uniform_bound(50, 0.0);
  for (float v : w.to_floats()) CHECK(std::fabs(v) <= bound);
  init::ones_(w);
  CHECK(w.at({3, 7}) == 1.0);
  init::zeros_(w);
  CHECK(w.at({3, 7}) == 0.0);
}

namespace {

// A test adapter: out = base_out + c (c a per-output parameter), and it
// records what it was handed.
struct AddBias : LinearAdapter {
  Variable c = add_parameter("c", Tensor::full({4}, 1.0, DType::f32, kCPU, Tag::adapter));
  const Linear* seen_base = nullptr;
  Variable forward(const Variable& x, const Variable& base_out, const Linear& base) override {
    CHECK(x.size(-1) == base.in_features());
    seen_base = &base;
    return ag::add(base_out, c);
  }
};

struct Holder : Module {
  std::shared_ptr<Linear> c_attn = add_module("c_attn", std::make_shared<Linear>(3, 4, true, Layout::conv1d));
};

}  // namespace

TEST_CASE("Linear adapter seam: forward, names, gradients, enable/clear") {
  Holder h;
  Variable x(tensor(kX, {2, 3}));
  Tensor base = h.c_attn->forward(x).value();

  auto adapter = std::make_shared<AddBias>();
  h.c_attn->set_adapter("lora", adapter);
  CHECK(h.c_attn->adapter() == adapter);
  CHECK(h.c_attn->adapter_name() == "lora");
  auto names = h.named_parameters("h.0.attn");
  REQUIRE(names.size() == 3);
  CHECK(names[2].first == "h.0.attn.c_attn.lora.c");
  CHECK(h.find_module("c_attn.lora") == adapter.get());

  // Only the adapter trains.
  h.freeze();
  h.unfreeze("*.lora.*");
  CHECK(h.num_parameters(true) == 4);

  Variable y = h.c_attn->forward(x);
  CHECK(adapter->seen_base == h.c_attn.get());
  CHECK(ops::max_abs_diff(y.value(), ops::add(base, Tensor::full({4}, 1.0))) < 1e-6);
  ag::sum_all(y).backward();
  REQUIRE(adapter->c.grad().defined());
  CHECK(adapter->c.grad().to_floats() == std::vector<float>{2.f, 2.f, 2.f, 2.f});
  CHECK_FALSE(h.c_attn->weight.grad().defined());

  // train/eval reach the adapter; disabled means the base output.
  h.eval();
  CHECK_FALSE(adapter->is_training());
  adapter->enabled = false;
  CHECK(ops::max_abs_diff(h.c_attn->forward(x).value(), base) == 0.0);
  adapter->enabled = true;

  h.c_attn->clear_adapter();
  CHECK(h.c_attn->adapter() == nullptr);
  CHECK(h.named_parameters().size() == 2);
  CHECK(ops::max_abs_diff(h.c_attn->forward(x).value(), base) == 0.0);
}

TEST_CASE("Embedding: rows by id; bad ids are errors") {
  Embedding e(5, 3);
  std::vector<float> w(15);
  for (int i = 0; i < 15; ++i) w[size_t(i)] = float(i);
  set_values(e.weight, w);
  Variable y = e.forward(Tensor::from_vector(std::vector<int32_t>{4, 0, 2, 2}, {2, 2}));
  CHECK(y.shape() == Shape{2, 2, 3});
  CHECK(y.value().to_floats() == std::vector<float>{12, 13, 14, 0, 1, 2, 6, 7, 8, 6, 7, 8});
  CHECK_THROWS_AS(e.forward(Tensor::from_vector(std::vector<int32_t>{5}, {1})), Error);
  CHECK_THROWS_AS(e.forward(Tensor::zeros({2})), Error);  // f32 ids
}

TEST_CASE("LayerNorm against the formula, with and without affine/bias") {
  const int N = 2, C = 5;
  std::vector<float> x = {1, 2, 3, 4, 6, -1, 0.5f, 0.25f, 3, -2};
  std::vector<float> w = {1, 0.5f, 2, -1, 1.5f}, b = {0, 0.1f, -0.2f, 0.3f, 1};
  auto hand = [&](bool affine, bool bias) {
    std::vector<double> y;
    for (int i = 0; i < N; ++i) {
      double mean = 0, var = 0;
      for (int c = 0; c < C; ++c) mean += x[size_t(i * C + c)];
      mean /= C;
      for (int c = 0; c < C; ++c) var += (x[size_t(i * C + c)] - mean) * (x[size_t(i * C + c)] - mean);
      var /= C;
      for (int c = 0; c < C; ++c) {
        double v = (x[size_t(i * C + c)] - mean) / std::sqrt(var + 1e-5);
        if (affine) v = v * w[size_t(c)] + (bias ? b[size_t(c)] : 0.0);
        y.push_back(v);
      }
    }
    return y;
  };
  LayerNorm ln(C);
  set_values(ln.weight, w);
  set_values(ln.bias, b);
  check_close(ln.forward(Variable(tensor(x, {N, C}))).value(), hand(true, true), 1e-4);

  LayerNorm plain(C, 1e-5f, false);
  CHECK(plain.named_parameters().empty());
  check_close(plain.forward(Variable(tensor(x, {N, C}))).value(), hand(false, false), 1e-4);

  LayerNorm nobias(C, 1e-5f, true, false);
  CHECK(nobias.named_parameters().size() == 1);
  set_values(nobias.weight, w);
  check_close(nobias.forward(Variable(tensor(x, {N, C}))).value(), hand(true, false), 1e-4);

  CHECK_THROWS_AS(ln.forward(Variable(Tensor::zeros({2, 4}))), Error);
}

TEST_CASE("Dropout: identity in eval or p = 0; reproducible from manual_seed; fresh masks per call") {
  Variable x(Tensor::full({1000}, 1.0));
  Dropout off(0.f);
  CHECK(off.forward(x).impl() == x.impl());

  manual_seed(42);
  Dropout d(0.25f);
  d.eval();
  CHECK(d.forward(x).impl() == x.impl());
  d.train();
  std::vector<float> a = d.forward(x).value().to_floats();
  std::vector<float> b = d.forward(x).value().to_floats();
  int zeros = 0;
  for (float v : a) {
    CHECK((v == 0.f || v == doctest::Approx(1.0 / 0.75)));
    zeros += v == 0.f;
  }
  CHECK(zeros > 180);
  CHECK(zeros < 320);
  CHECK(a != b);  // a new seed per call

  manual_seed(42);  // same seed, same construction order: the same masks
  Dropout again(0.25f);
  CHECK(again.forward(x).value().to_floats() == a);
  CHECK(again.forward(x).value().to_floats() == b);

  CHECK_THROWS_AS(Dropout(1.f), Error);
  CHECK_THROWS_AS(Dropout(-0.1f), Error);
}

TEST_CASE("nn::recompute replays dropout with the same masks") {
  auto run = [](bool recompute) {
    manual_seed(3);
    Dropout d(0.5f);
    Variable x(tensor({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4}), true);
    auto fn = [&](const std::vector<Variable>& in) { return ag::mul(d.forward(in[0]), in[0]); };
    Variable y = recompute ? nn::recompute(fn, {x}) : fn({x});
    ag::sum_all(y).backward();
    return std::pair(y.value().to_floats(), x.grad().to_floats());
  };
  auto plain = run(false);
  auto replayed = run(true);
  CHECK(plain.first == replayed.first);
  CHECK(plain.second == replayed.second);
}

TEST_CASE("GELU (tanh) and ReLU modules") {
  GELU gelu;
  ReLU relu;
  Variable x(tensor({-2.f, -0.5f, 0.f, 1.f, 3.f}, {5}));
  std::vector<double> want;
  for (float v : {-2.f, -0.5f, 0.f, 1.f, 3.f})
    want.push_back(0.5 * v * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (v + 0.044715 * v * v * v))));
  std::vector<float> got = gelu.forward(x).value().to_floats();
  for (size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5));
  CHECK(relu.forward(x).value().to_floats() == std::vector<float>{0, 0, 0, 1, 3});
}

TEST_CASE("cross_entropy: (B, T, V) logits, mean over non-ignored targets") {
  std::vector<float> logits = {1, 2, 3, 0, 0, 0, -1, 0.5f, 2, 4, -4, 0};  // (2, 2, 3)
  std::vector<int32_t> targets = {2, 1, -100, 0};                       // (2, 2)
  double total = 0;
  int count = 0;
  for (int r = 0; r < 4; ++r) {
    if (targets[size_t(r)] == -100) continue;
    double lse = 0;
    for (int v = 0; v < 3; ++v) lse += std::exp(double(logits[size_t(r * 3 + v)]));
    total += std::log(lse) - logits[size_t(r * 3 + targets[size_t(r)])];
    ++count;
  }
  Variable l(tensor(logits, {2, 2, 3}), true);
  Variable loss = nn::cross_entropy(l, Tensor::from_vector(targets, {2, 2}));
  CHECK(loss.item() == doctest::Approx(total / count).epsilon(1e-5));
  loss.backward();
  REQUIRE(l.grad().defined());
  CHECK(l.grad().shape() == Shape{2, 2, 3});
  CHECK(l.grad().at({1, 0, 1}) == 0.0);  // the ignored row

  CHECK_THROWS_AS(nn::cross_entropy(l, Tensor::from_vector(std::vector<int32_t>{1, 2, 0}, {3})), Error);
  CHECK_THROWS_AS(nn::cross_entropy(l, Tensor::zeros({2, 2})), Error);  // f32 targets
}

TEST_CASE("BatchRowsScope restores the rows it replaced, nested") {
  CHECK(nn::batch_rows().count == 0);
  {
    nn::BatchRowsScope outer({4, 2});
    {
      nn::BatchRowsScope inner({6, 2});
      CHECK(nn::batch_rows().first == 6);
    }
    CHECK(nn::batch_rows().first == 4);  // the outer scope's rows, not the whole batch
    CHECK(nn::batch_rows().count == 2);
  }
  CHECK(nn::batch_rows().count == 0);
}
