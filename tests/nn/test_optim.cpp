// Optimisers, clipping and LR schedules against independent double-precision
// formulas written out here (not the kernels).
#include <doctest/doctest.h>

#include <cmath>
#include <numbers>

#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "nn/adamw.h"
#include "nn/clip_grad.h"
#include "nn/linear.h"
#include "nn/lr_schedule.h"
#include "nn/sgd.h"

using namespace mp;
using namespace mp::nn;

namespace {

// A quadratic bowl: loss = sum (p - target)^2, so grad = 2 (p - target).
const std::vector<double> kStart = {0.5, -1.0, 2.0, 0.0, 3.0, -0.25};
const std::vector<double> kTarget = {1.0, 1.0, -1.0, 0.5, 0.0, 0.0};

std::vector<double> bowl_grad(const std::vector<double>& p) {
  std::vector<double> g(p.size());
  for (size_t i = 0; i < p.size(); ++i) g[i] = 2 * (p[i] - kTarget[i]);
  return g;
}

Variable make_param(const std::vector<double>& v, Shape shape) {
  std::vector<float> f(v.begin(), v.end());
  return Variable(Tensor::from_vector(f, shape, Tag::weights), true);
}

// Give p the bowl's gradient at its current (f32) value.
void set_bowl_grad(const Variable& p) {
  std::vector<float> cur = p.value().to_floats();
  std::vector<double> g = bowl_grad(std::vector<double>(cur.begin(), cur.end()));
  p.impl()->grad = Tensor::from_vector(std::vector<float>(g.begin(), g.end()), p.shape(), Tag::grads);
}

void check_close(const Tensor& got, const std::vector<double>& want, double tol) {
  std::vector<float> g = got.to_floats();
  REQUIRE(g.size() == want.size());
  for (size_t i = 0; i < g.size(); ++i) CHECK(g[i] == doctest::Approx(want[i]).epsilon(tol));
}

}  // namespace

TEST_CASE("AdamW: several steps match the PyTorch formula (double reference)") {
  const double lr = 0.05, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.1;
  Variable p = make_param(kStart, {2, 3});
  AdamW opt({{"p", p}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd});

  std::vector<double> ref = kStart, m(6, 0.0), v(6, 0.0);
  for (int t = 1; t <= 5; ++t) {
    set_bowl_grad(p);
    opt.step();
    std::vector<double> g = bowl_grad(ref);
    for (size_t i = 0; i < ref.size(); ++i) {
      ref[i] -= lr * wd * ref[i];  // decoupled decay
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
      ref[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
    check_close(p.value(), ref, 1e-5);
  }
  CHECK(opt.step_count() == 5);
}

TEST_CASE("AdamW: frozen parameters get no state; state is exactly m and v of the trainable") {
  Linear fc(4, 3);  // weight (3, 4) and bias (3)
  fc.weight.set_requires_grad(false);
  size_t before = Ledger::instance().current(Tag::optimizer);
  {
    AdamW opt(fc.named_parameters());
    CHECK(opt.params().size() == 1);
    CHECK(opt.params()[0].first == "bias");
    CHECK(opt.state_bytes() == 0);  // lazy: nothing before the first step
    CHECK(Ledger::instance().current(Tag::optimizer) == before);

    Variable y = fc.forward(Variable(Tensor::full({2, 4}, 1.0)));
    ag::sum_all(y).backward();
    CHECK_FALSE(fc.weight.grad().defined());
    opt.step();
    CHECK(opt.state_bytes() == 2 * 4 * 3);
    CHECK(Ledger::instance().current(Tag::optimizer) - before == 2 * 4 * size_t(fc.num_parameters(true)));
    auto state = opt.state_dict();
    CHECK(state.count("m.bias") == 1);
    CHECK(state.count("v.bias") == 1);
    CHECK(state.count("m.weight") == 0);
  }
  CHECK(Ledger::instance().current(Tag::optimizer) == before);
}

TEST_CASE("AdamW: a parameter without a gradient is skipped") {
  Variable a = make_param({1, 2}, {2}), b = make_param({3, 4}, {2});
  AdamW opt({{"a", a}, {"b", b}}, {.lr = 0.1});
  a.impl()->grad = Tensor::full({2}, 1.0, DType::f32, kCPU, Tag::grads);
  opt.step();
  CHECK(b.value().to_floats() == std::vector<float>{3, 4});
  CHECK(opt.state_dict().count("m.b") == 0);
  CHECK(opt.state_bytes() == 16);
}

TEST_CASE("AdamW: state_dict round trip resumes bit for bit") {
  Variable p1 = make_param(kStart, {6});
  AdamW a({{"p", p1}}, {.lr = 0.01});
  for (int i = 0; i < 3; ++i) set_bowl_grad(p1), a.step();
  TensorMap saved = a.state_dict();
  for (auto& [k, t] : saved) t = t.clone(Tag::workspace);  // a checkpoint is a copy
  Tensor p_saved = p1.value().clone();
  for (int i = 0; i < 3; ++i) set_bowl_grad(p1), a.step();

  Variable p2(p_saved, true);
  AdamW b({{"p", p2}}, {.lr = 0.01});
  b.load_state_dict(saved);
  CHECK(b.step_count() == 3);
  for (int i = 0; i < 3; ++i) set_bowl_grad(p2), b.step();
  CHECK(ops::max_abs_diff(p1.value(), p2.value()) == 0.0);

  TensorMap bad = saved;
  bad["m.p"] = Tensor::zeros({5});
  bad["m.nope"] = Tensor::zeros({6});
  try {
    b.load_state_dict(bad);
    FAIL("expected an error");
  } catch (const Error& e) {
    std::string msg = e.what();
    CHECK(msg.find("m.p: checkpoint has (5), parameter is (6)") != std::string::npos);
    CHECK(msg.find("unexpected key 'm.nope'") != std::string::npos);
  }
}

TEST_CASE("SGD with momentum, weight decay and nesterov vs the formula") {
  for (bool nesterov : {false, true}) {
    CAPTURE(nesterov);
    const double lr = 0.1, mu = 0.9, wd = 0.01;
    Variable p = make_param(kStart, {6});
    SGD opt({{"p", p}}, {.lr = lr, .momentum = mu, .weight_decay = wd, .nesterov = nesterov});
    std::vector<double> ref = kStart, buf(6, 0.0);
    for (int t = 1; t <= 4; ++t) {
      set_bowl_grad(p);
      Tensor g_before = p.grad().clone();
      opt.step();
      CHECK(ops::max_abs_diff(p.grad(), g_before) == 0.0);  // the gradient itself is untouched
      std::vector<double> g = bowl_grad(ref);
      for (size_t i = 0; i < ref.size(); ++i) {
        double d = g[i] + wd * ref[i];
        buf[i] = t == 1 ? d : mu * buf[i] + d;
        double step = nesterov ? d + mu * buf[i] : buf[i];
        ref[i] -= lr * step;
      }
      check_close(p.value(), ref, 1e-5);
    }
    CHECK(opt.state_bytes() == 6 * 4);
  }
}

TEST_CASE("SGD without momentum keeps no state") {
  Variable p = make_param(kStart, {6});
  SGD opt({{"p", p}}, {.lr = 0.5});
  set_bowl_grad(p);
  opt.step();
  std::vector<double> want = kStart, g = bowl_grad(kStart);
  for (size_t i = 0; i < want.size(); ++i) want[i] -= 0.5 * g[i];
  check_close(p.value(), want, 1e-6);
  CHECK(opt.state_bytes() == 0);
  CHECK_THROWS_AS(SGD({{"p", p}}, {.lr = 0.1, .nesterov = true}), Error);
}

TEST_CASE("clip_grad_norm: total norm in f64, scaled by max_norm / (norm + 1e-6)") {
  Variable a = make_param({0, 0}, {2}), b = make_param({0, 0, 0}, {3}), c = make_param({1}, {1});
  a.impl()->grad = Tensor::from_vector(std::vector<float>{3, 4}, {2}, Tag::grads);
  b.impl()->grad = Tensor::from_vector(std::vector<float>{0, 12, 0}, {3}, Tag::grads);
  // c has no gradient: skipped.
  double norm = clip_grad_norm({a, b, c}, 6.5);
  CHECK(norm == doctest::Approx(13.0));
  double coef = 6.5 / (13.0 + 1e-6);
  check_close(a.grad(), {3 * coef, 4 * coef}, 1e-6);
  check_close(b.grad(), {0, 12 * coef, 0}, 1e-6);
  CHECK(grad_norm({a, b}) == doctest::Approx(6.5).epsilon(1e-6));

  // Below max_norm: untouched.
  double norm2 = clip_grad_norm({{"a", a}, {"b", b}}, 100.0);
  CHECK(norm2 == doctest::Approx(6.5).epsilon(1e-6));
  check_close(a.grad(), {3 * coef, 4 * coef}, 1e-7);
  CHECK_THROWS_AS(clip_grad_norm({a}, 0.0), Error);
}

TEST_CASE("LR schedules at chosen steps vs closed forms") {
  using std::numbers::pi;
  auto c = LrSchedule::constant();
  CHECK(c.multiplier(0) == 1.0);
  CHECK(c.multiplier(1000) == 1.0);
  auto cw = LrSchedule::constant(4);
  CHECK(cw.multiplier(1) == 0.25);
  CHECK(cw.multiplier(4) == 1.0);

  auto lin = LrSchedule::linear(10, 110);
  CHECK(lin.multiplier(0) == 0.0);
  CHECK(lin.multiplier(5) == 0.5);
  CHECK(lin.multiplier(10) == 1.0);
  CHECK(lin.multiplier(60) == doctest::Approx(0.5));
  CHECK(lin.multiplier(110) == 0.0);
  CHECK(lin.multiplier(200) == 0.0);

  auto cos = LrSchedule::cosine(10, 110);
  CHECK(cos.multiplier(5) == 0.5);
  CHECK(cos.multiplier(10) == 1.0);
  CHECK(cos.multiplier(35) == doctest::Approx(0.5 * (1 + std::cos(pi * 0.25))));
  CHECK(cos.multiplier(60) == doctest::Approx(0.5));
  CHECK(cos.multiplier(110) == doctest::Approx(0.0));

  auto cmin = LrSchedule::cosine(0, 100, 0.1);
  CHECK(cmin.multiplier(0) == doctest::Approx(1.0));
  CHECK(cmin.multiplier(50) == doctest::Approx(0.55));
  CHECK(cmin.multiplier(100) == doctest::Approx(0.1));
  CHECK(cmin.lr(3e-4, 100) == doctest::Approx(3e-5));

  CHECK(LrSchedule::from_name("linear", 1, 10).kind() == LrSchedule::Kind::linear);
  CHECK_THROWS_AS(LrSchedule::from_name("step", 1, 10), Error);
  CHECK_THROWS_AS(LrSchedule::linear(-1, 10), Error);
}
