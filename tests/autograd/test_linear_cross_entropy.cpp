// linear_cross_entropy: the LM head and its loss fused, in row chunks. Its
// gradients against finite differences (f64), its values against the unfused
// cross_entropy(linear(...)), and the bytes it holds against the (N, V)
// logits it replaces.
#include "helpers.h"

#include "autograd/autocast.h"
#include "engine/error.h"
#include "engine/memory.h"

using namespace mp;
using namespace mp::ag;
using namespace mp::ag::test;

namespace {

// Targets (N) below V with every third row ignored (-100), from a fixed pattern.
Tensor pattern_targets(int64_t N, int64_t V) {
  std::vector<int32_t> t(static_cast<size_t>(N));
  for (size_t i = 0; i < t.size(); ++i) t[i] = i % 3 == 1 ? -100 : int32_t((i * 7 + 3) % size_t(V));
  return Tensor::from_vector(t, {N});
}

// max |a - b| / max |b|.
double rel_error(const Tensor& a, const Tensor& b) {
  std::vector<float> y = b.to_floats();
  double scale = 1e-30;
  for (float v : y) scale = std::max(scale, double(std::abs(v)));
  return ops::max_abs_diff(a, b) / scale;
}

struct LossAndGrads {
  double loss;
  Tensor dhidden, dweight;
};

// One forward and backward of `head` on f32 copies of hidden (N, E) and weight (V, E).
LossAndGrads run(const std::function<Variable(const Variable&, const Variable&)>& head, const Tensor& hidden,
                 const Tensor& weight, bool weight_grad = true) {
  Variable h(hidden.clone(), true), w(weight.clone(), weight_grad);
  Variable loss = head(h, w);
  loss.backward();
  return {loss.item(), h.grad(), weight_grad ? w.grad() : Tensor()};
}

}  // namespace

TEST_CASE("gradcheck: linear_cross_entropy, with ignored rows and chunks that do not divide N") {
  const int64_t N = 7, E = 5, V = 11;
  Tensor targets = pattern_targets(N, V);
  Tensor hidden = rand64({N, E}, 130, -2.0, 2.0), weight = rand64({V, E}, 131, -2.0, 2.0);
  for (int64_t chunk : {1, 3, 4, 7, 0}) {
    CAPTURE(chunk);
    auto fn = [&](const Vars& v) { return linear_cross_entropy(v[0], v[1], targets, -100, chunk); };
    check_gradients(fn, {hidden, weight});
    check_gradients(fn, {hidden, weight}, {.requires_grad = {true, false}});  // LoRA / prompt: frozen head
    check_gradients(fn, {hidden, weight}, {.requires_grad = {false, true}});
  }
  SUBCASE("another ignore_index") {
    Tensor custom = Tensor::from_vector(std::vector<int32_t>{1, 7, 7, 2, 0, 10, 7}, {N});
    check_gradients([&](const Vars& v) { return linear_cross_entropy(v[0], v[1], custom, 7, 2); }, {hidden, weight});
  }
}

TEST_CASE("linear_cross_entropy equals cross_entropy(linear(...)) in f32, also under bf16 autocast") {
  const int64_t N = 37, E = 16, V = 301;
  Tensor targets = pattern_targets(N, V);
  Tensor hidden = rand64({N, E}, 132, -2.0, 2.0).to(DType::f32), weight = rand64({V, E}, 133).to(DType::f32);
  auto unfused = [&](const Variable& h, const Variable& w) { return cross_entropy(linear(h, w, Variable()), targets); };
  for (DType compute : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(compute));
    AutocastScope cast(compute);
    LossAndGrads want = run(unfused, hidden, weight);
    for (int64_t chunk : {5, 16, 37, 0}) {
      CAPTURE(chunk);
      LossAndGrads got =
          run([&](const Variable& h, const Variable& w) { return linear_cross_entropy(h, w, targets, -100, chunk); },
              hidden, weight);
      CHECK(std::abs(got.loss - want.loss) <= 1e-6 * std::abs(want.loss));
      CHECK(rel_error(got.dhidden, want.dhidden) <= 1e-6);
      CHECK(rel_error(got.dweight, want.dweight) <= 1e-6);
    }
  }
  SUBCASE("a frozen bf16 weight (a bf16 base)") {
    Tensor w16 = weight.to(DType::bf16);
    LossAndGrads want = run(unfused, hidden, w16, false);
    LossAndGrads got = run([&](const Variable& h, const Variable& w) { return linear_cross_entropy(h, w, targets, -100, 8); },
                           hidden, w16, false);
    CHECK(std::abs(got.loss - want.loss) <= 1e-6 * std::abs(want.loss));
    CHECK(rel_error(got.dhidden, want.dhidden) <= 1e-6);
  }
}

TEST_CASE("linear_cross_entropy: every row ignored gives loss 0 and zero gradients") {
  Variable h(rand64({3, 4}, 134), true), w(rand64({5, 4}, 135), true);
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{-100, -100, -100}, {3});
  Variable loss = linear_cross_entropy(h, w, targets, -100, 2);
  CHECK(loss.item() == 0.0);
  loss.backward();
  for (float g : h.grad().to_floats()) CHECK(g == 0.f);  // no NaN
  for (float g : w.grad().to_floats()) CHECK(g == 0.f);
}

TEST_CASE("linear_cross_entropy: shape errors name the shapes") {
  Variable h(rand64({4, 3}, 136), true), w(rand64({6, 5}, 137), true);
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{0, 1, 2, 3}, {4});
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, w, targets), doctest::Contains("(6, 5)"), mp::Error);
  Variable w3(rand64({6, 3}, 138), true);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, w3, Tensor::from_vector(std::vector<int32_t>{0, 1}, {2})),
                       doctest::Contains("(2)"), mp::Error);
}

TEST_CASE("linear_cross_entropy never holds the (N, V) logits: its peak is far below N*V*4 bytes") {
  const int64_t N = 256, E = 32, V = 4096;
  Tensor targets = pattern_targets(N, V);
  Tensor hidden = rand64({N, E}, 139).to(DType::f32), weight = rand64({V, E}, 140).to(DType::f32);
  const size_t logits_bytes = size_t(N * V) * 4;
  // Activations and workspace peaks of one forward + backward (as the trainer tags them).
  auto peak = [&](const std::function<Variable(const Variable&, const Variable&)>& head) {
    Variable h(hidden.clone(), true), w(weight.clone(), true);
    Ledger& ledger = Ledger::instance();
    ledger.reset_peaks();
    const size_t before = ledger.current(Tag::activations) + ledger.current(Tag::workspace);
    Variable loss;
    {
      TagScope scope(Tag::activations);
      loss = head(h, w);
    }
    {
      TagScope scope(Tag::workspace);
      loss.backward();
    }
    return ledger.peak(Tag::activations) + ledger.peak(Tag::workspace) - before;
  };
  size_t unfused = peak([&](const Variable& h, const Variable& w) { return cross_entropy(linear(h, w, Variable()), targets); });
  size_t fused = peak([&](const Variable& h, const Variable& w) { return linear_cross_entropy(h, w, targets, -100, 8); });
  const size_t grads = size_t(V * E + N * E) * 4;  // dW and dhidden, which any head must produce
  MESSAGE("activations + workspace peaks: unfused " << unfused << " B, fused " << fused << " B, logits " << logits_bytes
                                                      << " B, gradients " << grads << " B");
  CHECK(unfused >= 2 * logits_bytes + grads);  // the logits and their gradient: what the test would catch
  // Beyond the gradients, a few (8, V) chunk buffers (a chunk's logits and their gradient).
  CHECK(fused - grads <= logits_bytes / 4);
}
