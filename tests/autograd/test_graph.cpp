// Graph mechanics (accumulation, freeing, no-grad scopes, detach) and the
// memory rule "save only what backward needs", measured with the ledger.
#include "helpers.h"

#include "autograd/recompute.h"
#include "engine/error.h"

using namespace mp;
using namespace mp::ag;
using namespace mp::ag::test;

static size_t activations() { return Ledger::instance().current(Tag::activations); }
static size_t grads() { return Ledger::instance().current(Tag::grads); }

static std::vector<double> values(const Tensor& t) {
  std::vector<double> out;
  Tensor c = t.to(DType::f64).contiguous();
  for (int64_t i = 0; i < c.numel(); ++i) out.push_back(c.data<double>()[i]);
  return out;
}

TEST_CASE("a Variable used twice sums its gradients") {
  Variable x(Tensor::from_vector(std::vector<double>{1, 2, 3}, {3}), true);
  sum_all(mul(x, x)).backward();  // d/dx sum x^2 = 2x
  CHECK(values(x.grad()) == std::vector<double>{2, 4, 6});
  SUBCASE("and a second backward accumulates into the leaf") {
    sum_all(scale(x, 3.f)).backward();
    CHECK(values(x.grad()) == std::vector<double>{5, 7, 9});
    x.zero_grad();
    CHECK(!x.grad().defined());
  }
  SUBCASE("through two paths of a diamond") {
    x.zero_grad();
    Variable a = ag::exp(x);
    sum_all(add(a, mul(a, x))).backward();  // d/dx (e^x + x e^x) = e^x (2 + x)
    std::vector<double> g = values(x.grad());
    for (int i = 0; i < 3; ++i) CHECK(g[i] == doctest::Approx(std::exp(i + 1.0) * (3.0 + i)));
  }
}

// Data parallelism sends a gradient as soon as it is final: the hook must
// see each leaf once, after its last contribution, while nodes still wait.
TEST_CASE("backward's hook reports each leaf once, when its gradient is complete") {
  Variable w(Tensor::from_vector(std::vector<double>{1, 2}, {2}), true);  // used twice, early and late
  Variable u(Tensor::from_vector(std::vector<double>{3, 4}, {2}), true);  // used once, near the loss
  Variable h = ag::exp(mul(w, w));                                        // the first use of w
  Variable loss = sum_all(add(mul(h, u), w));                             // u, then w again
  std::vector<std::pair<const VarImpl*, std::vector<double>>> seen;
  loss.backward([&](const VarImpl& leaf) { seen.emplace_back(&leaf, values(leaf.grad)); });
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].first == u.impl().get());  // u is complete first: w still waits for exp(w * w)
  CHECK(seen[1].first == w.impl().get());
  CHECK(seen[1].second == values(w.grad()));  // reported with its whole gradient
  for (int i = 0; i < 2; ++i) {
    const double wi = i + 1.0, ui = i + 3.0;
    CHECK(seen[0].second[size_t(i)] == doctest::Approx(std::exp(wi * wi)));
    CHECK(seen[1].second[size_t(i)] == doctest::Approx(1 + ui * std::exp(wi * wi) * 2 * wi));
  }
}

TEST_CASE("backward frees the graph as it goes") {
  Variable x(rand64({64, 64}, 1), true);
  size_t before = activations();
  Variable a = scale(x, 2.f);           // an activation (64*64 f64)
  Variable y = sum_all(gelu(a));         // gelu saves a
  size_t a_bytes = a.value().nbytes();
  a = Variable();                        // our handle is gone; the gelu node still holds a's value
  CHECK(activations() >= before + a_bytes);
  y.backward();
  // gelu's node, and with it a's value, was freed during the sweep.
  CHECK(activations() < before + a_bytes);
  CHECK(x.grad().defined());
  SUBCASE("a second backward through the freed graph is an error") { CHECK_THROWS_AS(y.backward(), mp::Error); }
}

TEST_CASE("NoGrad records nothing; EnableGrad records again") {
  Variable x(rand64({3}, 2), true);
  {
    NoGrad no_grad;
    Variable y = mul(x, x);
    CHECK(!y.requires_grad());
    CHECK(y.is_leaf());
    {
      EnableGrad enable;
      CHECK(mul(x, x).requires_grad());
    }
    CHECK(!grad_enabled());
  }
  CHECK(grad_enabled());
  CHECK(mul(x, x).requires_grad());
}

TEST_CASE("detach cuts the graph") {
  Variable x(Tensor::from_vector(std::vector<double>{1, 2, 3}, {3}), true);
  Variable d = x.detach();
  CHECK(!d.requires_grad());
  CHECK(d.value().storage() == x.value().storage());  // the same bytes
  sum_all(mul(d, x)).backward();                     // only the x factor carries a gradient
  CHECK(values(x.grad()) == std::vector<double>{1, 2, 3});
}

TEST_CASE("a leaf that does not require grad gets no gradient, and ops record nothing for it") {
  Variable x(rand64({2, 3}, 3), true);
  Variable frozen(rand64({3, 4}, 4), false);
  Variable y = matmul(x, frozen);
  REQUIRE(y.requires_grad());
  // The matmul node has an edge to x only.
  REQUIRE(y.impl()->node->inputs.size() == 2);
  CHECK(bool(y.impl()->node->inputs[0]));
  CHECK(!bool(y.impl()->node->inputs[1]));
  sum_all(y).backward();
  CHECK(x.grad().defined());
  CHECK(!frozen.grad().defined());
  // Nothing needs a gradient: no node at all.
  Variable z = matmul(frozen.detach(), Variable(rand64({4, 2}, 5)));
  CHECK(!z.requires_grad());
  CHECK(z.is_leaf());
  CHECK_THROWS_AS(sum_all(z).backward(), mp::Error);
}

TEST_CASE("gradients of non-leaves are not kept; leaf gradients are tagged grads") {
  size_t g0 = grads();
  Variable w(rand64({8, 8}, 6), true);
  Variable h = ag::tanh(w);
  sum_all(h).backward();
  CHECK(!h.grad().defined());
  CHECK(w.grad().tag() == Tag::grads);
  CHECK(grads() == g0 + w.grad().storage()->bytes());
}

// ---- save only what backward needs -----------------------------------------
//
// y = linear(h, W) with h an activation. W's gradient needs h; h's gradient
// needs W. With W frozen the node keeps W (a weight, alive anyway) and NOT h,
// so h's bytes are freed as soon as the caller drops h, while the graph
// through h lives on (the edge points at h's node, not at h's value).

TEST_CASE("save only what backward needs: a frozen weight's linear does not keep its input") {
  const int64_t N = 32, C = 64;
  Variable x0(rand64({N, C}, 7), true);  // a trainable leaf before h (a prompt, say)
  Variable w;
  {
    TagScope weights(Tag::weights);
    w = Variable(rand64({C, C}, 8));
  }
  size_t g0 = grads();
  const size_t h_bytes = size_t(N * C) * 8;

  SUBCASE("W frozen: dropping h frees it") {
    TagScope scope(Tag::activations);
    Variable h = scale(x0, 2.f);  // (N, C) activation; scale's node saves nothing
    Variable y = linear(h, w, Variable());
    size_t with_h = activations();
    h = Variable();
    CHECK(activations() == with_h - h_bytes);  // freed at once
    REQUIRE(y.requires_grad());                // the graph through h is intact
    sum_all(y).backward();
    CHECK(x0.grad().defined());
    CHECK(!w.grad().defined());
    // The only gradient buffer is x0's: no grad was allocated for W.
    CHECK(grads() == g0 + x0.grad().storage()->bytes());
  }
  SUBCASE("W trainable: h is saved for dW and stays alive") {
    w.set_requires_grad(true);
    TagScope scope(Tag::activations);
    Variable h = scale(x0, 2.f);
    Variable y = linear(h, w, Variable());
    size_t with_h = activations();
    h = Variable();
    CHECK(activations() == with_h);  // still held by the linear node
    sum_all(y).backward();
    CHECK(w.grad().defined());
    CHECK(activations() <= with_h - h_bytes);  // and freed by backward
  }
  SUBCASE("x needs no gradient and W is frozen: no graph, nothing saved") {
    Variable h(rand64({N, C}, 9));
    Variable y = linear(h, w, Variable());
    CHECK(!y.requires_grad());
    CHECK(y.is_leaf());
  }
}

TEST_CASE("save only what backward needs: matmul keeps each operand only for the other's gradient") {
  const int64_t N = 16, K = 32;
  Variable x0(rand64({N, K}, 10), true);
  Variable w(rand64({K, K}, 11), false);
  TagScope scope(Tag::activations);
  Variable h = scale(x0, 1.5f);
  Variable y = matmul(h, w);  // w frozen: keeps w, not h
  size_t with_h = activations();
  h = Variable();
  CHECK(activations() == with_h - size_t(N * K) * 8);
  // The other way round: h needs no gradient (a constant), w trainable: keeps h.
  Variable c(rand64({N, K}, 12));
  Variable w2(rand64({K, K}, 13), true);
  Variable y2 = matmul(c, w2);
  size_t with_c = activations();
  c = Variable();
  CHECK(activations() == with_c);  // c is saved for dW2
}

TEST_CASE("checkpoint keeps only the block's inputs alive") {
  const int64_t N = 64, C = 64;
  Variable x(rand64({N, C}, 14), true);
  Variable w(rand64({C, C}, 15), true);
  auto block = [&w](const Vars& in) { return ag::tanh(gelu(linear(ag::exp(in[0]), w, Variable()))); };
  TagScope scope(Tag::activations);
  size_t before = activations();
  Variable plain = block({x});
  size_t plain_bytes = activations() - before;
  Variable ckpt = ag::recompute(block, {x});
  size_t ckpt_bytes = activations() - before - plain_bytes;
  // Plain keeps exp, linear and gelu outputs (each saved for a backward);
  // the checkpoint keeps only its output (x is a leaf, not counted here).
  CHECK(ckpt_bytes == size_t(N * C) * 8);
  CHECK(plain_bytes >= 3 * size_t(N * C) * 8);
  // Both give the same gradients.
  sum_all(plain).backward();
  Tensor gx = x.grad().clone(), gw = w.grad().clone();
  x.zero_grad();
  w.zero_grad();
  sum_all(ckpt).backward();
  CHECK(ops::max_abs_diff(gx, x.grad()) < 1e-12);
  CHECK(ops::max_abs_diff(gw, w.grad()) < 1e-12);
}

TEST_CASE("shape errors name the shapes") {
  Variable x(rand64({2, 3}, 16), true), w(rand64({4, 5}, 17), true);
  CHECK_THROWS_WITH_AS(linear(x, w, Variable()), doctest::Contains("(2, 3)"), mp::Error);
  Variable logits(rand64({3, 4}, 18), true);
  CHECK_THROWS_AS(cross_entropy(logits, Tensor::from_vector(std::vector<int32_t>{0, 1}, {2})), mp::Error);
}

TEST_CASE("a gradient waiting for a node is summed in place only when nobody else holds it") {
  // x feeds a residual twice: h = x2 + gelu(x2) with x2 = 2x, and a view of
  // the same gradient (cat's narrow slices) must not be overwritten.
  Variable x(rand64({4, 3}, 19), true);
  Variable x2 = scale(x, 2.f);
  Variable h = add(x2, gelu(x2));
  Variable c = cat({h, h}, 0);  // both of h's gradients are views of c's gradient
  Tensor w = rand64({8, 3}, 20);
  sum_all(mul(c, Variable(w))).backward();
  // Reference: the same in f64 by hand via gradcheck's machinery.
  auto r = gradcheck(
      [&](const Vars& v) {
        Variable y2 = scale(v[0], 2.f);
        return cat({add(y2, gelu(y2)), add(y2, gelu(y2))}, 0);
      },
      {x.value().clone()});
  CHECK_MESSAGE(r.ok, r.str());
  Variable xr(x.value().clone(), true);
  Variable y2 = scale(xr, 2.f);
  Variable hr = add(y2, gelu(y2));
  sum_all(mul(cat({hr, hr}, 0), Variable(w))).backward();
  CHECK(ops::max_abs_diff(x.grad(), xr.grad()) < 1e-12);
}

// f32 paths (what training runs) against the f64 ones (what gradcheck
// verified): a small transformer-like step.
static std::vector<Tensor> block_grads(DType dt) {
  auto cast = [dt](const Tensor& t) { return t.to(dt); };
  const int64_t B = 2, T = 4, C = 8, H = 2, D = C / H, V = 11;
  Variable x(cast(rand64({B, T, C}, 21)), true);
  Variable w_attn(cast(rand64({C, 3 * C}, 22, -0.5, 0.5)), true);  // Conv1D layout (in, out)
  Variable b_attn(cast(rand64({3 * C}, 23)), true);
  Variable ln_w(cast(rand64({C}, 24, 0.5, 1.5)), true), ln_b(cast(rand64({C}, 25)), true);
  Variable head(cast(rand64({V, C}, 26)), true);
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{1, 2, 3, -100, 4, 5, 6, 10}, {B * T});

  Variable h = layer_norm(x, ln_w, ln_b, 1e-5f);
  Variable qkv = linear(h, w_attn, b_attn, true);  // (B, T, 3C)
  auto heads = [&](int i) { return permute(reshape(narrow(qkv, 2, i * C, C), {B, T, H, D}), {0, 2, 1, 3}); };
  Variable att = attention(heads(0), heads(1), heads(2), AttentionParams{0.5f, true, nullptr});  // (B, H, T, D)
  Variable y = add(x, reshape(permute(att, {0, 2, 1, 3}), {B, T, C}));                     // residual
  Variable logits = linear(reshape(gelu(y), {B * T, C}), head, Variable());               // (B*T, V)
  cross_entropy(logits, targets).backward();
  return {x.grad(), w_attn.grad(), b_attn.grad(), ln_w.grad(), ln_b.grad(), head.grad()};
}

TEST_CASE("f32 gradients match f64 ones through a transformer-like block") {
  std::vector<Tensor> g64 = block_grads(DType::f64), g32 = block_grads(DType::f32);
  for (size_t i = 0; i < g64.size(); ++i) {
    CAPTURE(i);
    REQUIRE(g32[i].dtype() == DType::f32);
    CHECK(ops::max_abs_diff(g32[i], g64[i]) < 1e-4);
  }
}

TEST_CASE("linear with a frozen bf16 weight matches f32 with the same (rounded) weight") {
  Variable x(rand64({3, 8}, 27).to(DType::f32), true);
  Tensor w16 = rand64({5, 8}, 28).to(DType::bf16);
  Variable w_bf16(w16), w_f32(w16.to(DType::f32));
  Variable y16 = linear(x, w_bf16, Variable()), y32 = linear(x, w_f32, Variable());
  CHECK(ops::max_abs_diff(y16.value(), y32.value()) < 1e-5);
  sum_all(y16).backward();
  Tensor gx16 = x.grad().clone();
  x.zero_grad();
  sum_all(y32).backward();
  CHECK(ops::max_abs_diff(gx16, x.grad()) < 1e-5);
}
