// A finite-difference gradient check for every differentiable op in
// autograd/ops.h, in f64: broadcasting, non-contiguous inputs, and inputs
// that need no gradient (the op's "don't compute it" path).
#include "helpers.h"

#include "autograd/recompute.h"
#include "engine/error.h"

using namespace mp;
using namespace mp::ag;
using namespace mp::ag::test;

TEST_CASE("gradcheck: binary ops with broadcasting") {
  Tensor a = rand64({2, 3, 4}, 1), b = rand64({3, 1}, 2), c = rand64({4}, 3);
  Tensor pos = rand64({2, 1}, 4, 0.5, 2.0);  // divisors away from 0
  check_gradients([](const Vars& v) { return add(v[0], v[1]); }, {a, b});
  check_gradients([](const Vars& v) { return sub(v[0], v[1]); }, {a, b});
  check_gradients([](const Vars& v) { return sub(v[1], v[0]); }, {a, c});
  check_gradients([](const Vars& v) { return mul(v[1], v[0]); }, {a, c});
  check_gradients([](const Vars& v) { return div(v[0], v[1]); }, {rand64({2, 3}, 5), pos});
  check_gradients([](const Vars& v) { return div(v[1], v[0]); }, {pos, rand64({2, 3}, 6)});
  SUBCASE("one side needs no gradient") {
    check_gradients([](const Vars& v) { return mul(v[0], v[1]); }, {a, c}, {.requires_grad = {true, false}});
    check_gradients([](const Vars& v) { return mul(v[0], v[1]); }, {a, c}, {.requires_grad = {false, true}});
    check_gradients([](const Vars& v) { return div(v[0], v[1]); }, {rand64({2, 3}, 5), pos},
                    {.requires_grad = {false, true}});
    check_gradients([](const Vars& v) { return add(v[0], v[1]); }, {a, b}, {.requires_grad = {false, true}});
  }
}

TEST_CASE("gradcheck: unary ops") {
  Tensor x = rand64({3, 5}, 10, -2.0, 2.0);
  Tensor pos = rand64({3, 5}, 11, 0.2, 3.0);
  // relu at values away from its kink at 0 (|x| >= 0.1).
  Tensor away = rand64({3, 5}, 12, 0.1, 2.0);
  for (int64_t i = 0; i < 15; i += 2) away.data<double>()[i] *= -1;
  check_gradients([](const Vars& v) { return scale(v[0], -2.5f); }, {x});
  check_gradients([](const Vars& v) { return neg(v[0]); }, {x});
  check_gradients([](const Vars& v) { return ag::exp(v[0]); }, {x});
  check_gradients([](const Vars& v) { return ag::log(v[0]); }, {pos});
  check_gradients([](const Vars& v) { return ag::sqrt(v[0]); }, {pos});
  check_gradients([](const Vars& v) { return ag::tanh(v[0]); }, {x});
  check_gradients([](const Vars& v) { return square(v[0]); }, {x});
  check_gradients([](const Vars& v) { return relu(v[0]); }, {away});
  check_gradients([](const Vars& v) { return gelu(v[0]); }, {x});
}

TEST_CASE("gradcheck: non-contiguous inputs") {
  // A transposed (4, 3) view of a (3, 4) tensor and a narrowed slice, passed
  // directly, and a transpose made inside the function.
  Tensor t = rand64({3, 4}, 20).transpose(0, 1);  // (4, 3), strides (1, 4)
  Tensor n = rand64({4, 6}, 21).narrow(1, 2, 3);  // (4, 3), row stride 6
  REQUIRE(!t.is_contiguous());
  REQUIRE(!n.is_contiguous());
  check_gradients([](const Vars& v) { return mul(v[0], v[1]); }, {t, n});
  check_gradients([](const Vars& v) { return gelu(add(v[0], v[1])); }, {t, n});
  check_gradients([](const Vars& v) { return ag::exp(transpose(v[0], 0, 1)); }, {rand64({3, 4}, 22)});
  check_gradients([](const Vars& v) { return softmax(v[0]); }, {t});
  check_gradients([](const Vars& v) { return sum(v[0], 0); }, {n});
}

TEST_CASE("gradcheck: reductions") {
  Tensor x = rand64({2, 3, 4}, 30);
  for (int axis : {0, 1, 2, -1}) {
    for (bool keep : {false, true}) {
      CAPTURE(axis);
      CAPTURE(keep);
      check_gradients([&](const Vars& v) { return sum(v[0], axis, keep); }, {x});
      check_gradients([&](const Vars& v) { return mean(v[0], axis, keep); }, {x});
    }
  }
  check_gradients([](const Vars& v) { return sum_all(v[0]); }, {x});
  check_gradients([](const Vars& v) { return mean_all(v[0]); }, {x});
  // A reduction's gradient is a broadcast view: fed to another op's backward.
  check_gradients([](const Vars& v) { return mul(mean(v[0], 1, true), v[0]); }, {x});
}

TEST_CASE("gradcheck: shape ops") {
  Tensor x = rand64({2, 3, 4}, 40);
  check_gradients([](const Vars& v) { return reshape(v[0], {6, 4}); }, {x});
  check_gradients([](const Vars& v) { return reshape(v[0], {4, -1}); }, {x});
  check_gradients([](const Vars& v) { return transpose(v[0], 0, 2); }, {x});
  check_gradients([](const Vars& v) { return permute(v[0], {2, 0, 1}); }, {x});
  check_gradients([](const Vars& v) { return permute(v[0], {1, -1, 0}); }, {x});
  check_gradients([](const Vars& v) { return narrow(v[0], 2, 1, 2); }, {x});
  check_gradients([](const Vars& v) { return narrow(v[0], 0, 1, 1); }, {x});
  check_gradients([](const Vars& v) { return expand(v[0], {2, 3, 4}); }, {rand64({3, 1}, 41)});
  check_gradients([](const Vars& v) { return mul(expand(v[0], {2, 3, 4}), v[1]); }, {rand64({1, 3, 1}, 42), x});
  // A reshape of a transposed (non-contiguous) value copies; the gradient still flows.
  check_gradients([](const Vars& v) { return reshape(transpose(v[0], 1, 2), {2, 12}); }, {x});
  SUBCASE("cat") {
    Tensor a = rand64({2, 1, 4}, 43), b = rand64({2, 3, 4}, 44), c = rand64({2, 2, 4}, 45);
    check_gradients([](const Vars& v) { return cat(v, 1); }, {a, b, c});
    check_gradients([](const Vars& v) { return cat(v, -2); }, {a, b, c}, {.requires_grad = {true, false, true}});
    check_gradients([](const Vars& v) { return cat({v[0], v[0]}, 0); }, {b});  // one input twice
  }
}

TEST_CASE("gradcheck: matmul") {
  SUBCASE("2-D with every transpose flag") {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        CAPTURE(ta);
        CAPTURE(tb);
        Tensor a = ta ? rand64({4, 3}, 50) : rand64({3, 4}, 50);  // op(a) (3, 4)
        Tensor b = tb ? rand64({5, 4}, 51) : rand64({4, 5}, 51);  // op(b) (4, 5)
        check_gradients([&](const Vars& v) { return matmul(v[0], v[1], ta, tb); }, {a, b});
      }
    }
  }
  SUBCASE("batched") {
    check_gradients([](const Vars& v) { return matmul(v[0], v[1]); }, {rand64({2, 3, 4}, 52), rand64({2, 4, 5}, 53)});
    check_gradients([](const Vars& v) { return matmul(v[0], v[1], true, true); },
                    {rand64({2, 2, 4, 3}, 54), rand64({2, 2, 5, 4}, 55)});
  }
  SUBCASE("a weight shared by the batch (its gradient sums over the batch)") {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        CAPTURE(ta);
        CAPTURE(tb);
        Tensor a = ta ? rand64({2, 4, 3}, 56) : rand64({2, 3, 4}, 56);
        Tensor w = tb ? rand64({5, 4}, 57) : rand64({4, 5}, 57);
        check_gradients([&](const Vars& v) { return matmul(v[0], v[1], ta, tb); }, {a, w});
        // Shared on the left: w^T-like (M, K) times a batch of (K, N).
        Tensor bb = rand64({2, 4, 3}, 58);
        Tensor left = ta ? rand64({4, 5}, 59) : rand64({5, 4}, 59);
        check_gradients([&](const Vars& v) { return matmul(v[0], v[1], ta, false); }, {left, bb});
      }
    }
  }
  SUBCASE("only one side needs a gradient") {
    Tensor a = rand64({2, 3, 4}, 60), w = rand64({4, 5}, 61);
    check_gradients([](const Vars& v) { return matmul(v[0], v[1]); }, {a, w}, {.requires_grad = {true, false}});
    check_gradients([](const Vars& v) { return matmul(v[0], v[1]); }, {a, w}, {.requires_grad = {false, true}});
  }
  SUBCASE("non-contiguous operands") {
    Tensor a = rand64({4, 3}, 62).transpose(0, 1);  // (3, 4) view
    Tensor b = rand64({4, 7}, 63).narrow(1, 1, 5);  // (4, 5) view
    check_gradients([](const Vars& v) { return matmul(v[0], v[1]); }, {a, b});
  }
}

TEST_CASE("gradcheck: linear") {
  Tensor x = rand64({2, 3, 4}, 70);
  Tensor w_out_in = rand64({5, 4}, 71), w_in_out = rand64({4, 5}, 72), b = rand64({5}, 73);
  auto with_bias = [](bool in_out) {
    return [in_out](const Vars& v) { return linear(v[0], v[1], v[2], in_out); };
  };
  auto no_bias = [](bool in_out) {
    return [in_out](const Vars& v) { return linear(v[0], v[1], Variable(), in_out); };
  };
  check_gradients(with_bias(false), {x, w_out_in, b});
  check_gradients(with_bias(true), {x, w_in_out, b});
  check_gradients(no_bias(false), {x, w_out_in});
  check_gradients(no_bias(true), {x, w_in_out});
  // Frozen weight (PEFT's base layer): only x and b want gradients.
  check_gradients(with_bias(false), {x, w_out_in, b}, {.requires_grad = {true, false, true}});
  check_gradients(with_bias(true), {x, w_in_out, b}, {.requires_grad = {true, false, false}});
  // Frozen input (the first layer): only the weight.
  check_gradients(with_bias(false), {x, w_out_in, b}, {.requires_grad = {false, true, false}});
  // A 2-D input, and a non-contiguous one.
  check_gradients(with_bias(false), {rand64({6, 4}, 74), w_out_in, b});
  check_gradients(with_bias(true), {rand64({3, 2, 4}, 75).transpose(0, 1), w_in_out, b});
}

TEST_CASE("gradcheck: softmax and log_softmax") {
  Tensor x = rand64({2, 3, 5}, 80, -3.0, 3.0);
  check_gradients([](const Vars& v) { return softmax(v[0]); }, {x});
  check_gradients([](const Vars& v) { return log_softmax(v[0]); }, {x});
  check_gradients([](const Vars& v) { return log_softmax(transpose(v[0], 1, 2)); }, {x});
}

TEST_CASE("gradcheck: layer_norm") {
  Tensor x = rand64({2, 3, 6}, 90, -2.0, 2.0), w = rand64({6}, 91, 0.5, 1.5), b = rand64({6}, 92);
  auto ln = [](const Vars& v) { return layer_norm(v[0], v[1], v[2], 1e-5f); };
  check_gradients(ln, {x, w, b});
  check_gradients([](const Vars& v) { return layer_norm(v[0], v[1], Variable(), 1e-5f); }, {x, w});
  check_gradients(ln, {x, w, b}, {.requires_grad = {true, false, false}});  // frozen norm
  check_gradients(ln, {x, w, b}, {.requires_grad = {false, true, true}});   // only the parameters
  check_gradients(ln, {x, w, b}, {.requires_grad = {false, false, true}});  // only the bias
  check_gradients(ln, {rand64({6, 4}, 93).transpose(0, 1), w, b});          // non-contiguous x (4, 6)
}

TEST_CASE("gradcheck: embedding") {
  // Row 1 is read three times (its gradient is the sum), row 4 never (0).
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{1, 0, 3, 1, 2, 1}, {2, 3});
  check_gradients([&](const Vars& v) { return embedding(ids, v[0]); }, {rand64({5, 4}, 100)});
}

TEST_CASE("gradcheck: cross_entropy") {
  Tensor logits = rand64({6, 5}, 110, -2.0, 2.0);
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{0, 4, -100, 2, -100, 3}, {6});
  check_gradients([&](const Vars& v) { return cross_entropy(v[0], targets); }, {logits});
  Tensor custom = Tensor::from_vector(std::vector<int32_t>{1, 7, 7, 2, 0, 4}, {6});
  check_gradients([&](const Vars& v) { return cross_entropy(v[0], custom, 7); }, {logits});
  // Through a log_softmax-free classifier head: linear then cross-entropy.
  check_gradients([&](const Vars& v) { return cross_entropy(linear(v[0], v[1], Variable()), targets); },
                  {rand64({6, 3}, 111), rand64({5, 3}, 112)});
}

TEST_CASE("cross_entropy: every row ignored gives loss 0 and a zero gradient") {
  Variable logits(rand64({3, 4}, 113), true);
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{-100, -100, -100}, {3});
  Variable loss = cross_entropy(logits, targets);
  CHECK(loss.item() == 0.0);
  loss.backward();
  REQUIRE(logits.grad().defined());
  for (float g : logits.grad().to_floats()) CHECK(g == 0.f);  // no NaN
}

TEST_CASE("gradcheck: dropout") {
  Tensor x = rand64({4, 8}, 120);
  check_gradients([](const Vars& v) { return dropout(v[0], 0.3f, 42); }, {x});
  check_gradients([](const Vars& v) { return dropout(transpose(v[0], 0, 1), 0.5f, 7); }, {x});
  SUBCASE("p = 0 is the identity: the same Variable comes back") {
    Variable v(x, true);
    CHECK(dropout(v, 0.f, 1).impl() == v.impl());
  }
  SUBCASE("p outside [0, 1) is a user error") {
    Variable v(x, true);
    CHECK_THROWS_AS(dropout(v, 1.f, 1), mp::Error);
    CHECK_THROWS_AS(dropout(v, -0.1f, 1), mp::Error);
  }
  SUBCASE("the mask keeps about 1 - p of the elements, scaled by 1 / (1 - p)") {
    Variable big(Tensor::full({100, 100}, 1.0, DType::f64));
    std::vector<float> y = dropout(big, 0.3f, 3).value().to_floats();
    int kept = 0;
    for (float e : y) {
      if (e != 0.f) {
        kept++;
        CHECK(e == doctest::Approx(1.0 / 0.7));
      }
    }
    CHECK(kept > 6500);
    CHECK(kept < 7500);
  }
}

TEST_CASE("gradcheck: attention") {
  const int64_t B = 2, H = 2, T = 3, S = 5, D = 4;  // S - T = 2 prefix keys
  Tensor q = rand64({B, H, T, D}, 130), k = rand64({B, H, S, D}, 131), v = rand64({B, H, S, D}, 132);
  // Batch 1 has its key 3 padded out (query 0 still sees the prefix keys).
  Tensor mask = Tensor::from_vector(std::vector<int32_t>{1, 1, 1, 1, 1, 1, 1, 1, 0, 1}, {B, S});
  for (bool causal : {true, false}) {
    for (bool masked : {false, true}) {
      CAPTURE(causal);
      CAPTURE(masked);
      AttentionParams p{0.5f, causal, masked ? &mask : nullptr};
      check_gradients([&](const Vars& x) { return attention(x[0], x[1], x[2], p); }, {q, k, v});
    }
  }
  SUBCASE("attention dropout: the backward redraws the forward's mask") {
    AttentionParams p{0.5f, true, &mask, 0.3f, 2024};
    check_gradients([&](const Vars& x) { return attention(x[0], x[1], x[2], p); }, {q, k, v});
  }
  SUBCASE("T == S, and only some inputs need gradients (prefix tuning: keys and values)") {
    Tensor k3 = rand64({B, H, T, D}, 133), v3 = rand64({B, H, T, D}, 134);
    AttentionParams p{0.5f, true, nullptr};
    check_gradients([&](const Vars& x) { return attention(x[0], x[1], x[2], p); }, {q, k3, v3});
    check_gradients([&](const Vars& x) { return attention(x[0], x[1], x[2], p); }, {q, k, v},
                    {.requires_grad = {false, true, true}});
    check_gradients([&](const Vars& x) { return attention(x[0], x[1], x[2], p); }, {q, k, v},
                    {.requires_grad = {true, false, false}});
  }
  SUBCASE("the key mask outlives the caller's pointer") {
    Variable vq(q, true), vk(k, true), vv(v, true);
    Variable out;
    {
      Tensor local_mask = mask.clone();
      AttentionParams p{0.5f, true, &local_mask};
      out = attention(vq, vk, vv, p);
    }  // local_mask's handle is gone; the node holds its own
    sum_all(out).backward();
    CHECK(vq.grad().defined());
  }
  SUBCASE("non-contiguous q, k, v (a permuted (B, T, H, D) projection)") {
    Tensor qp = rand64({B, T, H, D}, 135).permute({0, 2, 1, 3});
    Tensor kp = rand64({B, S, H, D}, 136).permute({0, 2, 1, 3});
    Tensor vp = rand64({B, S, H, D}, 137).permute({0, 2, 1, 3});
    AttentionParams p{0.5f, true, &mask};
    check_gradients([&](const Vars& x) { return attention(x[0], x[1], x[2], p); }, {qp, kp, vp});
  }
}

TEST_CASE("gradcheck: recompute") {
  // A small block: gelu(x W^T + b), W and b captured by the block (leaves),
  // x coming in as the recomputed block's input.
  Tensor x = rand64({2, 3, 4}, 140), w = rand64({5, 4}, 141), b = rand64({5}, 142);
  auto block_fn = [](const Vars& v) {
    Variable w = v[1], b = v[2];
    return ag::recompute([w, b](const Vars& in) { return gelu(linear(in[0], w, b)); }, {v[0]});
  };
  check_gradients(block_fn, {x, w, b});
  // The input needs no gradient but the block's parameters do: the node must still be recorded.
  check_gradients(block_fn, {x, w, b}, {.requires_grad = {false, true, true}});
  // Only the input (a frozen block).
  check_gradients(block_fn, {x, w, b}, {.requires_grad = {true, false, false}});
  SUBCASE("two inputs, dropout inside (its mask comes back from the seed), nested recompute") {
    check_gradients(
        [](const Vars& v) {
          return ag::recompute(
              [](const Vars& in) {
                Variable h = dropout(mul(in[0], in[1]), 0.3f, 9);
                return ag::recompute([](const Vars& in2) { return ag::tanh(in2[0]); }, {h});
              },
              {v[0], v[1]});
        },
        {rand64({3, 4}, 143), rand64({4}, 144)});
  }
}

TEST_CASE("gradcheck catches a wrong backward") {
  // y = 3 x with a backward that forgets the factor 3 on element 2.
  auto wrong = [](const Vars& v) {
    return make_result(ops::scale(v[0].value(), 3.f), "wrong", {v[0]}, [](const Tensor& g, std::span<Tensor> gin) {
      Tensor gx = ops::scale(g, 3.f);
      gx.set({2}, g.at({2}));
      gin[0] = gx;
    });
  };
  GradcheckResult r = gradcheck(wrong, {rand64({4}, 150)});
  CHECK(!r.ok);
  CHECK(r.worst_input == 0);
  CHECK(r.worst_index == 2);
  CHECK(r.worst_numeric == doctest::Approx(3 * r.worst_analytic));
  // Gradients routed to the wrong element are caught too (the weights differ per element).
  auto swapped = [](const Vars& v) {
    return make_result(ops::scale(v[0].value(), 1.f), "swapped", {v[0]}, [](const Tensor& g, std::span<Tensor> gin) {
      Tensor gx = g.clone();
      gx.set({0}, g.at({1}));
      gx.set({1}, g.at({0}));
      gin[0] = gx;
    });
  };
  CHECK(!gradcheck(swapped, {rand64({4}, 151)}).ok);
}
