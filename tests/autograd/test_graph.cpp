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

TEST_CASE("backward frees the graph as it goes") {
  Variable x(rand64({64, 64}, 1), true);
  size_t before = activations();
  Variable a = scale(x, 2.f);           // an activation (64*64 f64)
  Variable y = sum_all(gelu(a));         // gelu saves a
  size_t a_bytes = a.value().nbytes();
  a = Variable();                        // our handle is gone; the gelu node still holds a's value
  CHECK(activations() >= before + a_bytes);
  y.backward();
  // gelu's node (and with it a's value) was freed during the sweep; only the
  // gelu output's value (held by nobody now... but y's (1) value) remains.
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
  Variable ckpt = checkpoint(block, {x});
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
