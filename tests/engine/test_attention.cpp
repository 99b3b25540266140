// Fused attention against naive dropout(softmax(scale q k^T + mask)) v, with
// causal, prefix keys, a key mask, segments (packed rows) and dropout (whose mask must be the one
// ops::dropout draws on the (B, H, T, S) probabilities with the same seed);
// the backward against finite differences (f64).
#include <doctest/doctest.h>

#include <cmath>

#include "engine/backend.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "tests/engine/reference.h"

using namespace mp;
using namespace mp::test;

struct Naive {
  std::vector<double> out, lse;
};

// The dense reference: for each (b, h, t), scores over every key, -inf where
// not visible, softmax, dropout, weighted sum of values. Rows with no key give 0.
static Naive naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), S = k.size(2);
  std::vector<double> vq = values(q), vk = values(k), vv = values(v);
  std::vector<double> mask = p.key_mask ? values(*p.key_mask) : std::vector<double>(size_t(B * S), 1);
  std::vector<double> seg = p.segment_ids ? values(*p.segment_ids) : std::vector<double>(size_t(B * T), 0);
  // (B, H, T, S) dropout factors: what ops::dropout makes of a tensor of ones.
  std::vector<double> keep =
      values(ops::dropout(Tensor::full({B, H, T, S}, 1.0, DType::f64), p.dropout, p.seed, p.dropout_offset));
  Naive r{std::vector<double>(size_t(B * H * T * D), 0), std::vector<double>(size_t(B * H * T), -INFINITY)};
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> score(size_t(S), -INFINITY);
        double m = -INFINITY;
        for (int64_t s = 0; s < S; ++s) {
          const bool same_segment = s < S - T || seg[size_t(b * T + s - (S - T))] == seg[size_t(b * T + t)];
          const bool visible = (!p.causal || s <= t + S - T) && mask[size_t(b * S + s)] != 0 && same_segment;
          if (!visible) continue;
          double d = 0;
          for (int64_t i = 0; i < D; ++i)
            d += vq[size_t(((b * H + h) * T + t) * D + i)] * vk[size_t(((b * H + h) * S + s) * D + i)];
          score[size_t(s)] = p.scale * d;
          m = std::max(m, score[size_t(s)]);
        }
        if (m == -INFINITY) continue;
        double sum = 0;
        for (int64_t s = 0; s < S; ++s) sum += std::exp(score[size_t(s)] - m);
        r.lse[size_t((b * H + h) * T + t)] = m + std::log(sum);
        for (int64_t s = 0; s < S; ++s) {
          const double w = std::exp(score[size_t(s)] - m) / sum * keep[size_t(((b * H + h) * T + t) * S + s)];
          for (int64_t i = 0; i < D; ++i)
            r.out[size_t(((b * H + h) * T + t) * D + i)] += w * vv[size_t(((b * H + h) * S + s) * D + i)];
        }
      }
  return r;
}

// sum(attention(q, k, v).out * gout): the scalar whose gradient backward gives
// for the incoming gradient gout, for finite differences.
static double output_dot(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p,
                         const Tensor& gout) {
  std::vector<double> o = values(ops::attention(q, k, v, p).out), g = values(gout);
  double s = 0;
  for (size_t i = 0; i < o.size(); ++i) s += o[i] * g[i];
  return s;
}

// Segments of packed rows (B = 2, T = 5): row 0 holds examples of 2 and 3
// tokens, row 1 one of 4 tokens and a padding token (its own segment).
static Tensor packed_segments() { return Tensor::from_vector(std::vector<int32_t>{0, 0, 1, 1, 1, 0, 0, 0, 0, 1}, {2, 5}); }

TEST_CASE("attention forward: causal, prefix keys, key mask, segments, fully masked rows") {
  const int64_t B = 2, H = 3, T = 5, D = 8;
  const Tensor segments = packed_segments();
  for (int64_t S : {int64_t(5), int64_t(8)})
    for (bool causal : {true, false})
      for (bool masked : {false, true})
        for (bool packed : {false, true})
        for (float dropout : {0.f, 0.3f}) {
          CAPTURE(S);
          CAPTURE(causal);
          CAPTURE(masked);
          CAPTURE(packed);
          CAPTURE(dropout);
          Tensor q = rand_tensor({B, H, T, D}, 1), k = rand_tensor({B, H, S, D}, 2), v = rand_tensor({B, H, S, D}, 3);
          std::vector<int32_t> m(size_t(B * S), 1);
          m[1] = 0;                           // batch 0: key 1 padded
          for (int64_t s = 0; s < S; ++s) m[size_t(S + s)] = s >= S - 2 ? 0 : 1;  // batch 1: last two keys padded
          if (S == T) m[0] = 0;               // batch 0, query 0 (causal) sees only key 0: now fully masked
          Tensor mask = Tensor::from_vector(m, {B, S});
          AttentionParams p;
          p.scale = 1.f / std::sqrt(float(D));
          p.causal = causal;
          p.key_mask = masked ? &mask : nullptr;
          p.segment_ids = packed ? &segments : nullptr;
          p.dropout = dropout;
          p.seed = 1234;
          auto r = ops::attention(q, k, v, p);
          Naive want = naive_attention(q, k, v, p);
          check_close(r.out, want.out, 1e-5);
          std::vector<double> lse = values(r.lse);
          for (size_t i = 0; i < lse.size(); ++i) {
            if (std::isinf(want.lse[i])) CHECK(lse[i] == -INFINITY);
            else CHECK(std::abs(lse[i] - want.lse[i]) < 1e-5);
          }
          for (double o : values(r.out)) CHECK(std::isfinite(o));
        }
}

TEST_CASE("attention forward at a size that runs in parallel") {
  const int64_t B = 2, H = 2, T = 33, S = 40, D = 16;
  Tensor q = rand_tensor({B, H, T, D}, 4), k = rand_tensor({B, H, S, D}, 5), v = rand_tensor({B, H, S, D}, 6);
  AttentionParams p;
  p.scale = 0.25f;
  auto r = ops::attention(q, k, v, p);
  check_close(r.out, naive_attention(q, k, v, p).out, 1e-5);
  p.dropout = 0.5f;
  p.seed = 99;
  auto dropped = ops::attention(q, k, v, p);
  check_close(dropped.out, naive_attention(q, k, v, p).out, 1e-5);
  CHECK(ops::max_abs_diff(dropped.out, r.out) > 0.1);  // the dropout did something
  CHECK(ops::max_abs_diff(dropped.lse, r.lse) == 0.0);  // lse is the undropped softmax's
}

TEST_CASE("attention backward against finite differences (f64)") {
  // T = 5 and 3 leave a partial block of queries in the backward's blocks of 4.
  const int64_t sizes[3][2] = {{4, 6}, {5, 5}, {3, 7}};
  for (const auto& size : sizes)
    for (bool causal : {true, false})
      for (bool packed : {false, true})
      for (float dropout : {0.f, 0.4f}) {
        CAPTURE(size[0]);
        CAPTURE(size[1]);
        CAPTURE(causal);
        CAPTURE(packed);
        CAPTURE(dropout);
        const int64_t B = 2, H = 2, D = 3, T = size[0], S = size[1];
        Tensor q = rand_tensor({B, H, T, D}, 7, DType::f64), k = rand_tensor({B, H, S, D}, 8, DType::f64),
               v = rand_tensor({B, H, S, D}, 9, DType::f64);
        Tensor gout = rand_tensor({B, H, T, D}, 10, DType::f64);
        std::vector<int32_t> m(size_t(B * S), 1);
        m[2] = 0;
        m[size_t(S + 4)] = 0;
        Tensor mask = Tensor::from_vector(m, {B, S});
        AttentionParams p;
        p.scale = 0.7f;
        p.causal = causal;
        p.key_mask = &mask;
        // Two segments in row 0 (split after the first token), one in row 1.
        std::vector<int32_t> sg(size_t(B * T), 0);
        for (int64_t t = 1; t < T; ++t) sg[size_t(t)] = 1;
        Tensor segments = Tensor::from_vector(sg, {B, T});
        p.segment_ids = packed ? &segments : nullptr;
        p.dropout = dropout;
        p.seed = 77;
        auto r = ops::attention(q, k, v, p);
        Tensor gq = Tensor::empty(q.shape(), DType::f64), gk = Tensor::empty(k.shape(), DType::f64),
               gv = Tensor::empty(v.shape(), DType::f64);
        backend(kCPU).attention_backward(q, k, v, r.out, r.lse, gout, p, gq, gk, gv);

        auto loss = [&] { return output_dot(q, k, v, p, gout); };
        for (Tensor* x : {&q, &k, &v}) {
          Tensor g = x == &q ? gq : x == &k ? gk : gv;
          check_close(g, numeric_grad(*x, loss), 1e-7);
        }
        // Each gradient may be skipped.
        Tensor gv2 = Tensor::empty(v.shape(), DType::f64);
        backend(kCPU).attention_backward(q, k, v, r.out, r.lse, gout, p, Tensor(), Tensor(), gv2);
        CHECK(ops::max_abs_diff(gv2, gv) == 0);
      }
}

TEST_CASE("attention backward on fully masked rows gives zero gradients") {
  const int64_t B = 1, H = 1, T = 2, S = 2, D = 4;
  Tensor q = rand_tensor({B, H, T, D}, 11), k = rand_tensor({B, H, S, D}, 12), v = rand_tensor({B, H, S, D}, 13);
  Tensor mask = Tensor::from_vector(std::vector<int32_t>{0, 1}, {B, S});
  AttentionParams p;
  p.key_mask = &mask;
  auto r = ops::attention(q, k, v, p);
  CHECK(values(r.out.select(2, 0)) == std::vector<double>(4, 0.0));  // query 0 sees only the masked key 0
  Tensor gq = Tensor::empty(q.shape()), gk = Tensor::empty(k.shape()), gv = Tensor::empty(v.shape());
  backend(kCPU).attention_backward(q, k, v, r.out, r.lse, Tensor::full(q.shape(), 1.0), p, gq, gk, gv);
  for (const Tensor& g : {gq, gk, gv})
    for (double x : values(g)) CHECK(std::isfinite(x));
  CHECK(values(gq.select(2, 0)) == std::vector<double>(4, 0.0));
}

TEST_CASE("attention shape errors") {
  Tensor q = Tensor::zeros({1, 2, 5, 4}), k = Tensor::zeros({1, 2, 3, 4});
  CHECK_THROWS_WITH_AS(ops::attention(q, k, k, AttentionParams{}),
                       "attention: 3 keys for 5 queries (q (1, 2, 5, 4), k (1, 2, 3, 4)): need S >= T", Error);
  Tensor mask = Tensor::zeros({1, 4}, DType::i32);
  AttentionParams p;
  p.key_mask = &mask;
  CHECK_THROWS_AS(ops::attention(q, Tensor::zeros({1, 2, 5, 4}), Tensor::zeros({1, 2, 5, 4}), p), Error);
  Tensor segments = Tensor::zeros({1, 4}, DType::i32);
  AttentionParams ps;
  ps.segment_ids = &segments;
  CHECK_THROWS_WITH_AS(ops::attention(q, q, q, ps), doctest::Contains("segment_ids (1, 4) i32 should be i32 (1, 5)"),
                       Error);
  // On the meta device (the memory planner) segments are checked and cost nothing.
  Tensor mq = Tensor::empty({1, 2, 5, 4}, DType::f32, kMeta), mseg = Tensor::empty({1, 5}, DType::i32, kMeta);
  ps.segment_ids = &mseg;
  CHECK(ops::attention(mq, mq, mq, ps).out.device().is_meta());
  ps.segment_ids = &segments;  // on the cpu, q on meta
  CHECK_THROWS_WITH_AS(ops::attention(mq, mq, mq, ps), doctest::Contains("segment_ids (1, 4) i32 should be"), Error);
}

// Rows [1, 3) of a batch of 3, with the dropout offset of row 1 in the
// (B, H, T, S) probabilities, give those rows of the whole batch's output.
TEST_CASE("attention dropout with an offset: a shard of the batch gets the whole batch's masks") {
  const int64_t B = 3, H = 2, T = 5, S = 7, D = 4;
  Tensor q = rand_tensor({B, H, T, D}, 21), k = rand_tensor({B, H, S, D}, 22), v = rand_tensor({B, H, S, D}, 23);
  AttentionParams p;
  p.scale = 0.5f;
  p.dropout = 0.4f;
  p.seed = 5;
  Tensor whole = ops::attention(q, k, v, p).out;  // (B, H, T, D)
  auto rows = [](const Tensor& t) { return t.narrow(0, 1, 2).contiguous(); };
  p.dropout_offset = uint64_t(1 * H * T * S);
  CHECK(ops::max_abs_diff(ops::attention(rows(q), rows(k), rows(v), p).out, rows(whole)) == 0);
  p.dropout_offset = 0;
  CHECK(ops::max_abs_diff(ops::attention(rows(q), rows(k), rows(v), p).out, rows(whole)) > 0);
}

TEST_CASE("attention on a long sequence: blocks of queries, each with only the keys it may see") {
  // f64, one head of T = 700 queries: one head per chunk, in query blocks
  // [444, 700), [188, 444), [0, 188); 5 prefix keys, a masked key, dropout.
  const int64_t B = 1, H = 1, T = 700, S = 705, D = 4;
  Tensor q = rand_tensor({B, H, T, D}, 21, DType::f64), k = rand_tensor({B, H, S, D}, 22, DType::f64),
         v = rand_tensor({B, H, S, D}, 23, DType::f64), gout = rand_tensor({B, H, T, D}, 24, DType::f64);
  std::vector<int32_t> m(size_t(S), 1);
  m[300] = 0;
  Tensor mask = Tensor::from_vector(m, {B, S});
  AttentionParams p;
  p.scale = 0.9f;
  p.key_mask = &mask;
  p.dropout = 0.3f;
  p.seed = 5;
  auto r = ops::attention(q, k, v, p);
  const Naive want = naive_attention(q, k, v, p);
  check_close(r.out, want.out, 1e-10);
  check_close(r.lse, want.lse, 1e-10);

  Tensor gq = Tensor::empty(q.shape(), DType::f64), gk = Tensor::empty(k.shape(), DType::f64),
         gv = Tensor::empty(v.shape(), DType::f64);
  backend(kCPU).attention_backward(q, k, v, r.out, r.lse, gout, p, gq, gk, gv);
  auto loss = [&] { return output_dot(q, k, v, p, gout); };
  // Rows in each query block; keys in the prefix, in every block's range, in
  // the last block's alone, and the last key.
  for (Tensor* x : {&q, &k, &v})
    for (int64_t row : {int64_t(0), int64_t(3), int64_t(100), int64_t(250), int64_t(450), int64_t(640), int64_t(699)}) {
      const int64_t i = row * D + row % D;
      Tensor g = (x == &q ? gq : x == &k ? gk : gv).view({x->numel()});
      CAPTURE(row);
      CHECK(g.at({i}) == doctest::Approx(central_difference(*x, i, loss)).epsilon(1e-6));
    }
}

// Mixed precision (AttentionParams::compute bf16): the products read bf16
// copies of q, k, v, dO, P and dS. Against the dense reference on the
// bf16-rounded q, k, v, the only other rounding is P's before P V: each P_ts
// moves by at most 2^-9 P_ts, so out moves by at most 2^-9 sum_s P_ts |v_s|
// <= 2^-9 (|v| <= 1, and dropout's 1 / (1 - p) on top). The gradients
// follow the f32 kernel's on the rounded inputs within bf16's precision.
TEST_CASE("attention with bf16 products: the reference on rounded inputs, within P's rounding") {
  struct Case {
    int64_t B, H, T, S, D;
    float dropout;
  };
  // Chunks of heads; and one long head in blocks of queries (T > 256).
  for (const Case& c : {Case{2, 2, 33, 40, 16, 0.3f}, Case{1, 1, 300, 305, 8, 0.f}}) {
    CAPTURE(c.T);
    auto rounded = [](const Tensor& t) { return t.to(DType::bf16).to(DType::f32); };
    Tensor q = rounded(rand_tensor({c.B, c.H, c.T, c.D}, 31)), k = rounded(rand_tensor({c.B, c.H, c.S, c.D}, 32));
    Tensor v = rounded(rand_tensor({c.B, c.H, c.S, c.D}, 33)), gout = rand_tensor({c.B, c.H, c.T, c.D}, 34);
    AttentionParams p;
    p.scale = 0.3f;
    p.dropout = c.dropout;
    p.seed = 7;
    AttentionParams p16 = p;
    p16.compute = DType::bf16;
    auto r32 = ops::attention(q, k, v, p), r16 = ops::attention(q, k, v, p16);
    const Naive want = naive_attention(q, k, v, p);
    check_close(r16.out, want.out, 1.0 / 512 / (1 - c.dropout));
    check_close(r16.lse, want.lse, 1e-4);
    CHECK(ops::max_abs_diff(r16.out, r32.out) > 1e-6);  // P was rounded: the bf16 path ran

    auto grads = [&](const AttentionParams& params, const ops::AttentionOut& r) {
      std::vector<Tensor> g{Tensor::empty(q.shape()), Tensor::empty(k.shape()), Tensor::empty(v.shape())};
      backend(kCPU).attention_backward(q, k, v, r.out, r.lse, gout, params, g[0], g[1], g[2]);
      return g;
    };
    const std::vector<Tensor> g32 = grads(p, r32), g16 = grads(p16, r16);
    for (size_t i = 0; i < 3; ++i) {
      CAPTURE(i);
      const double scale = ops::max_abs_diff(g32[i], Tensor::zeros(g32[i].shape()));
      CHECK(ops::max_abs_diff(g16[i], g32[i]) <= 2e-2 * scale);
      CHECK(ops::max_abs_diff(g16[i], g32[i]) > 0);
    }
  }
}
