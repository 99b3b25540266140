// The CUDA backend against the CPU backend (the reference): every Backend
// kernel on random inputs, f32 within 1e-5 (relative to the largest value of
// the reference; TF32 off), bf16 within 1e-2, f64 within 1e-12. Exits 77 (a skip for Meson)
// when no GPU is present.
#define DOCTEST_CONFIG_IMPLEMENT
#include "tests/cuda/gpu_main.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda/cuda_backend.h"
#include "engine/backend.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "engine/tensor.h"

using namespace mp;

namespace {

Backend& cpu() { return backend(kCPU); }
Backend& gpu() { return backend(kCUDA); }

Tensor uniform(const Shape& s, uint64_t seed, double lo = -1, double hi = 1, DType dt = DType::f32) {
  Tensor t = Tensor::empty(s);
  cpu().random(t, Distribution::uniform, lo, hi, seed);
  return t.to(dt);
}

Tensor dev(const Tensor& t) { return t.to(kCUDA); }
Tensor empty_like(const Tensor& t, Device d) { return Tensor::empty(t.shape(), t.dtype(), d); }

// Any tensor's values as doubles, on the host, row-major.
std::vector<double> host_doubles(const Tensor& t) {
  Tensor h = t.to(kCPU).to(DType::f64).contiguous();
  return std::vector<double>(h.data<double>(), h.data<double>() + h.numel());
}

// max |got - want| <= rtol * max(max |want|, 1e-30) over the finite values of
// want; an infinite want (the -inf lse of a fully masked row) must be matched
// exactly. Compared in double; both any device.
void expect_close(const Tensor& got, const Tensor& want, double rtol, const char* what) {
  CAPTURE(what);
  REQUIRE(got.shape() == want.shape());
  std::vector<double> g = host_doubles(got), w = host_doubles(want);
  double scale = 1e-30, err = 0;
  size_t worst = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (std::isfinite(w[i])) scale = std::max(scale, std::fabs(w[i]));
    const double e = std::isinf(w[i]) && g[i] == w[i] ? 0.0 : std::fabs(g[i] - w[i]);
    if (!(e <= err)) {
      err = e;
      worst = i;
    }
  }
  CAPTURE(worst);
  CAPTURE(err);
  CAPTURE(scale);
  CHECK(err <= rtol * scale);
}

constexpr double kF32 = 1e-5, kBF16 = 1e-2, kF64 = 1e-12;

}  // namespace

TEST_CASE("memory: allocate, copy to and from the host, the cache reuses blocks") {
  Tensor h = uniform({3, 1000}, 1);
  Tensor d = dev(h);
  CHECK(d.device() == kCUDA);
  expect_close(d.to(kCPU), h, 0, "round trip");
  const Ledger& ledger = Ledger::instance();
  cuda::empty_cache();
  const size_t workspace = ledger.current(Tag::workspace, kCUDA), total = ledger.current_total(kCUDA);
  CHECK(ledger.current(Tag::cached, kCUDA) == 0);
  { Tensor t = Tensor::empty({1 << 20}, DType::f32, kCUDA, Tag::workspace); }
  CHECK(cuda::cached_bytes() >= (size_t(4) << 20));
  // The freed block is reserved, not allocated: its bytes moved from workspace to cached.
  CHECK(ledger.current(Tag::workspace, kCUDA) == workspace);
  CHECK(ledger.current(Tag::cached, kCUDA) == (size_t(4) << 20));
  CHECK(ledger.current_total(kCUDA) == total + (size_t(4) << 20));
  { Tensor t = Tensor::empty({1 << 20}, DType::f32, kCUDA, Tag::activations); }  // the same block again
  CHECK(ledger.current(Tag::cached, kCUDA) == (size_t(4) << 20));
  cuda::empty_cache();
  CHECK(cuda::cached_bytes() == 0);
  CHECK(ledger.current(Tag::cached, kCUDA) == 0);
  CHECK(ledger.current_total(kCUDA) == total);
}

TEST_CASE("a tensor moves between the GPU and the sim device, through the host") {
  Tensor h = uniform({5, 7}, 3);
  Tensor on_sim = dev(h).to(kSim);  // cuda -> sim
  CHECK(on_sim.device() == kSim);
  Tensor back = on_sim.to(kCUDA);  // sim -> cuda
  CHECK(back.device() == kCUDA);
  expect_close(back.to(kCPU), h, 0, "cuda -> sim -> cuda");
}

TEST_CASE("copy with dtype conversion and any strides; fill") {
  Tensor a = uniform({5, 7, 9}, 2, -50, 50);
  Tensor at = a.permute({2, 0, 1});  // a strided view
  for (DType dt : {DType::f32, DType::bf16, DType::i32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    Tensor want = Tensor::empty(at.shape(), dt), got = Tensor::empty(at.shape(), dt, kCUDA);
    cpu().copy(at, want);
    gpu().copy(dev(a).permute({2, 0, 1}), got);
    expect_close(got, want, 0, "copy");
    // and back to f32 from that dtype, into a transposed destination
    Tensor w2 = Tensor::empty({9, 5, 7}), g2 = Tensor::empty({9, 5, 7}, DType::f32, kCUDA);
    cpu().copy(want.transpose(0, 2).transpose(0, 2), w2);
    gpu().copy(got, g2);
    expect_close(g2, w2, 0, "copy back");
  }
  Tensor row = uniform({1, 7}, 3);
  Tensor want = Tensor::empty({4, 7}), got = Tensor::empty({4, 7}, DType::f32, kCUDA);
  cpu().copy(row.expand({4, 7}), want);
  gpu().copy(dev(row).expand({4, 7}), got);
  expect_close(got, want, 0, "broadcast copy");
  for (DType dt : {DType::f32, DType::bf16, DType::i32, DType::f64}) {
    Tensor f = Tensor::full({3, 5}, 2.7, dt, kCUDA), r = Tensor::full({3, 5}, 2.7, dt);
    expect_close(f, r, 0, "fill");
  }
}

TEST_CASE("random: the same Philox numbers as the CPU") {
  for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
    for (Distribution dist : {Distribution::uniform, Distribution::normal}) {
      Tensor w = Tensor::empty({1001}, dt), g = Tensor::empty({1001}, dt, kCUDA);
      cpu().random(w, dist, 0.5, 2, 77);
      gpu().random(g, dist, 0.5, 2, 77);
      expect_close(g, w, dt == DType::bf16 ? kBF16 : kF32, "random");
    }
  }
}

TEST_CASE("binary, unary, unary_backward, axpby with broadcasting and strides") {
  Tensor a = uniform({4, 1, 5}, 4), b = uniform({5, 3, 4}, 5, 0.5, 2);  // b: divisor away from 0
  Tensor ae = a.expand({4, 3, 5}), be = b.permute({2, 1, 0});
  Tensor da = dev(a), db = dev(b);
  for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
    Tensor w = Tensor::empty({4, 3, 5}), g = Tensor::empty({4, 3, 5}, DType::f32, kCUDA);
    cpu().binary(op, ae, be, w);
    gpu().binary(op, da.expand({4, 3, 5}), db.permute({2, 1, 0}), g);
    expect_close(g, w, kF32, "binary");
  }
  Tensor x = uniform({6, 50}, 6, -3, 3), xp = uniform({6, 50}, 7, 0.1, 3), gy = uniform({6, 50}, 8);
  for (UnaryOp op : {UnaryOp::neg, UnaryOp::exp, UnaryOp::log, UnaryOp::sqrt, UnaryOp::tanh, UnaryOp::relu,
                     UnaryOp::gelu, UnaryOp::square}) {
    CAPTURE(int(op));
    const Tensor& in = (op == UnaryOp::log || op == UnaryOp::sqrt) ? xp : x;
    Tensor wy = empty_like(in, kCPU), gy_dev = Tensor::empty(in.shape(), DType::f32, kCUDA);
    cpu().unary(op, in, wy);
    gpu().unary(op, dev(in), gy_dev);
    expect_close(gy_dev, wy, kF32, "unary");
    const bool from_y = op == UnaryOp::exp || op == UnaryOp::sqrt || op == UnaryOp::tanh;
    Tensor wgx = empty_like(in, kCPU), ggx = Tensor::empty(in.shape(), DType::f32, kCUDA);
    cpu().unary_backward(op, from_y ? wy : in, gy, wgx);
    gpu().unary_backward(op, from_y ? dev(wy) : dev(in), dev(gy), ggx);
    expect_close(ggx, wgx, kF32, "unary_backward");
  }
  for (float beta : {0.f, 0.7f}) {
    Tensor w = uniform({6, 50}, 9), g = dev(w);
    cpu().axpby(1.5f, x, beta, w);
    gpu().axpby(1.5f, dev(x), beta, g);
    expect_close(g, w, kF32, "axpby");
  }
}

TEST_CASE("reduce sum and max over each axis") {
  Tensor a = uniform({7, 33, 20}, 10);
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::max}) {
    for (int axis = 0; axis < 3; ++axis) {
      Shape s = a.shape();
      s[size_t(axis)] = 1;
      Tensor w = Tensor::empty(s), g = Tensor::empty(s, DType::f32, kCUDA);
      cpu().reduce(op, a, axis, w);
      gpu().reduce(op, dev(a), axis, g);
      expect_close(g, w, kF32, "reduce");
    }
    Tensor big = uniform({3, 5000}, 11);  // a long axis: the block-per-output kernel
    Tensor w = Tensor::empty({3, 1}), g = Tensor::empty({3, 1}, DType::f32, kCUDA);
    cpu().reduce(op, big, 1, w);
    gpu().reduce(op, dev(big), 1, g);
    expect_close(g, w, kF32, "reduce long axis");
  }
}

TEST_CASE("matmul: transposes, shared operands, f32, f64, bf16") {
  cuda::set_tf32(false);
  const int64_t B = 3, M = 17, K = 40, N = 23;
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      for (int shared = 0; shared < 3; ++shared) {  // 0: none, 1: b shared, 2: a shared
        CAPTURE(ta);
        CAPTURE(tb);
        CAPTURE(shared);
        Shape sa = ta ? Shape{shared == 2 ? 1 : B, K, M} : Shape{shared == 2 ? 1 : B, M, K};
        Shape sb = tb ? Shape{shared == 1 ? 1 : B, N, K} : Shape{shared == 1 ? 1 : B, K, N};
        Tensor a = uniform(sa, 20), b = uniform(sb, 21), c = uniform({B, M, N}, 22);
        Tensor w = c.clone(), g = dev(c);
        cpu().matmul(a, ta, b, tb, w, 0.5f, 0.25f);
        gpu().matmul(dev(a), ta, dev(b), tb, g, 0.5f, 0.25f);
        expect_close(g, w, kF32, "f32");
        Tensor w64 = c.to(DType::f64), g64 = dev(w64);
        cpu().matmul(a.to(DType::f64), ta, b.to(DType::f64), tb, w64, 0.5f, 0.25f);
        gpu().matmul(dev(a.to(DType::f64)), ta, dev(b.to(DType::f64)), tb, g64, 0.5f, 0.25f);
        expect_close(g64, w64, kF64, "f64");
        // bf16 weight with f32 activations, and both bf16
        Tensor wb = Tensor::zeros({B, M, N}), gb = Tensor::zeros({B, M, N}, DType::f32, kCUDA);
        cpu().matmul(a, ta, b.to(DType::bf16), tb, wb, 1.f, 0.f);
        gpu().matmul(dev(a), ta, dev(b.to(DType::bf16)), tb, gb, 1.f, 0.f);
        expect_close(gb, wb, kF32, "f32 x bf16");
        Tensor gbb = Tensor::zeros({B, M, N}, DType::f32, kCUDA), wbb = Tensor::zeros({B, M, N});
        cpu().matmul(a.to(DType::bf16), ta, b.to(DType::bf16), tb, wbb, 1.f, 0.f);
        gpu().matmul(dev(a.to(DType::bf16)), ta, dev(b.to(DType::bf16)), tb, gbb, 1.f, 0.f);
        expect_close(gbb, wbb, kBF16, "bf16 x bf16");
      }
    }
  }
}

// The row kernels compute f64 inputs in double (gradient checks), others in float.
double tol_of(DType dt) { return dt == DType::f64 ? kF64 : dt == DType::bf16 ? kBF16 : kF32; }

TEST_CASE("softmax and log_softmax, forward and backward, f32 and f64") {
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    for (int64_t C : {50, 5000}) {
      Tensor x = uniform({9, C}, 30, -5, 5, dt), gy = uniform({9, C}, 31, -1, 1, dt);
      for (bool log : {false, true}) {
        Tensor wy = empty_like(x, kCPU), gyd = empty_like(x, kCUDA);
        cpu().softmax(x, wy, log);
        gpu().softmax(dev(x), gyd, log);
        expect_close(gyd, wy, tol_of(dt), "softmax");
        Tensor wgx = empty_like(x, kCPU), ggx = empty_like(x, kCUDA);
        cpu().softmax_backward(wy, gy, wgx, log);
        gpu().softmax_backward(dev(wy), dev(gy), ggx, log);
        expect_close(ggx, wgx, tol_of(dt), "softmax_backward");
      }
    }
  }
}

TEST_CASE("layer_norm forward and backward (gw, gb accumulate), f32 and f64") {
  const int64_t N = 37, C = 768;
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    Tensor x = uniform({N, C}, 40, -2, 3, dt), w = uniform({C}, 41, 0.5, 1.5, dt), b = uniform({C}, 42, -1, 1, dt),
           gy = uniform({N, C}, 43, -1, 1, dt);
    for (bool with_b : {true, false}) {
      Tensor bb = with_b ? b : Tensor();
      Tensor wy = empty_like(x, kCPU), wm = Tensor::empty({N}, dt), wr = Tensor::empty({N}, dt);
      Tensor gyv = empty_like(x, kCUDA), gm = Tensor::empty({N}, dt, kCUDA), gr = Tensor::empty({N}, dt, kCUDA);
      cpu().layer_norm(x, w, bb, 1e-5f, wy, wm, wr);
      gpu().layer_norm(dev(x), dev(w), with_b ? dev(b) : Tensor(), 1e-5f, gyv, gm, gr);
      expect_close(gyv, wy, tol_of(dt), "y");
      expect_close(gm, wm, tol_of(dt), "mean");
      expect_close(gr, wr, tol_of(dt), "rstd");
      Tensor wgx = empty_like(x, kCPU), wgw = uniform({C}, 44, -1, 1, dt), wgb = uniform({C}, 45, -1, 1, dt);
      Tensor ggx = empty_like(x, kCUDA), ggw = dev(wgw), ggb = dev(wgb);
      cpu().layer_norm_backward(gy, x, w, wm, wr, wgx, wgw, wgb);
      gpu().layer_norm_backward(dev(gy), dev(x), dev(w), gm, gr, ggx, ggw, ggb);
      expect_close(ggx, wgx, tol_of(dt), "gx");
      expect_close(ggw, wgw, tol_of(dt), "gw");
      expect_close(ggb, wgb, tol_of(dt), "gb");
    }
  }
}

TEST_CASE("embedding and its scatter-add backward; bad ids are errors") {
  const int64_t V = 50, C = 33;
  std::vector<int32_t> idv = {3, 7, 3, 49, 0, 7, 7, 12};
  Tensor ids = Tensor::from_vector(idv, {int64_t(idv.size())});
  Tensor table = uniform({V, C}, 50), gout = uniform({int64_t(idv.size()), C}, 51);
  for (DType dt : {DType::f32, DType::bf16}) {
    Tensor t = table.to(dt);
    Tensor w = Tensor::empty({int64_t(idv.size()), C}), g = Tensor::empty({int64_t(idv.size()), C}, DType::f32, kCUDA);
    cpu().embedding(ids, t, w);
    gpu().embedding(dev(ids), dev(t), g);
    expect_close(g, w, 0, "embedding");
  }
  Tensor wg = uniform({V, C}, 52), gg = dev(wg);
  cpu().embedding_backward(ids, gout, wg, 3);
  gpu().embedding_backward(dev(ids), dev(gout), gg, 3);
  expect_close(gg, wg, kF32, "embedding_backward");
  Tensor bad = dev(Tensor::from_vector(std::vector<int32_t>{1, 50}, {2}));
  Tensor o = Tensor::empty({2, C}, DType::f32, kCUDA);
  CHECK_THROWS_AS(gpu().embedding(bad, dev(table), o), Error);
}

TEST_CASE("the step's device-side numbers: target count, arange, mask positions, clip by norm") {
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{5, -100, 7, 0, -100, 1}, {6});
  Tensor want = Tensor::empty({1}), got = Tensor::empty({1}, DType::f32, kCUDA);
  cpu().inverse_target_count(targets, -100, want);
  gpu().inverse_target_count(dev(targets), -100, got);
  CHECK(got.item() == want.item());
  Tensor wpos = Tensor::empty({3, 5}, DType::i32), gpos = Tensor::empty({3, 5}, DType::i32, kCUDA);
  cpu().arange(wpos, 2);
  gpu().arange(gpos, 2);
  CHECK(ops::max_abs_diff(gpos.to(kCPU).to(DType::f32), wpos.to(DType::f32)) == 0);
  Tensor mask = Tensor::from_vector(std::vector<int32_t>{0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0}, {3, 5});
  Tensor wmask = Tensor::empty({3, 4}, DType::i32), gmask = Tensor::empty({3, 4}, DType::i32, kCUDA);
  cpu().mask_positions(mask, 2, wmask);
  gpu().mask_positions(dev(mask), 2, gmask);
  CHECK(ops::max_abs_diff(gmask.to(kCPU).to(DType::f32), wmask.to(DType::f32)) == 0);
  for (double n : {0.5, 40.0}) {  // untouched, then scaled
    Tensor norm = Tensor::from_vector(std::vector<double>{n}, {1});
    Tensor wg = uniform({257}, 61), gg = dev(wg);
    cpu().clip_by_norm(wg, norm, 1.0, 1e-6);
    gpu().clip_by_norm(gg, dev(norm), 1.0, 1e-6);
    CHECK(ops::max_abs_diff(gg.to(kCPU), wg) == 0);
  }
}

TEST_CASE("add_sum_of_squares: the CPU's sum, f32, bf16 and f64, past one block's threads") {
  for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
    CAPTURE(dtype_name(dt));
    Tensor x = uniform({100003}, 62, -2, 2, dt);
    Tensor want = Tensor::zeros({1}, DType::f64), got = Tensor::zeros({1}, DType::f64, kCUDA);
    for (int rep = 0; rep < 2; ++rep) {  // it adds to what the sum holds
      ops::add_sum_of_squares(x, want);
      ops::add_sum_of_squares(dev(x), got);
    }
    CHECK(got.item() == doctest::Approx(want.item()).epsilon(1e-10));  // other order: n * 2^-53
  }
}

TEST_CASE("fused cross-entropy forward and backward with ignore_index, f32 and f64") {
  const int64_t N = 6, V = 50257;
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{5, -100, 50256, 0, 1234, -100}, {N});
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    Tensor logits = uniform({N, V}, 60, -8, 8, dt);
    Tensor wl = Tensor::empty({N}, dt), gl = Tensor::empty({N}, dt, kCUDA);
    Tensor wlse = Tensor::empty({N}, dt), glse = Tensor::empty({N}, dt, kCUDA);
    cpu().cross_entropy(logits, targets, -100, wl, wlse);
    gpu().cross_entropy(dev(logits), dev(targets), -100, gl, glse);
    expect_close(gl, wl, tol_of(dt), "losses");
    expect_close(glse, wlse, tol_of(dt), "lse");
    Tensor wg = empty_like(logits, kCPU), gg = empty_like(logits, kCUDA);
    Tensor gscale = Tensor::from_vector(std::vector<float>{0.25f}, {1});  // (1)
    cpu().cross_entropy_backward(logits, targets, wlse, -100, gscale, wg);
    gpu().cross_entropy_backward(dev(logits), dev(targets), glse, -100, dev(gscale), gg);
    expect_close(gg, wg, tol_of(dt), "glogits");
    Tensor bad = dev(Tensor::from_vector(std::vector<int32_t>{5, V, 0, 0, 0, 0}, {N}));
    CHECK_THROWS_AS(gpu().cross_entropy(dev(logits), bad, -100, gl, glse), Error);
  }
}

TEST_CASE("dropout: the same mask as the CPU") {
  Tensor x = uniform({10, 101}, 70);
  for (float p : {0.f, 0.1f, 0.5f}) {
    Tensor w = empty_like(x, kCPU), g = Tensor::empty(x.shape(), DType::f32, kCUDA);
    cpu().dropout(x, p, 123, 0, w);
    gpu().dropout(dev(x), p, 123, 0, g);
    expect_close(g, w, kF32, "dropout");
  }
}

TEST_CASE("fused attention forward and backward: causal, prefix keys, key_mask, bf16, f64, dropout") {
  enum Mask { none, padding, batch1_all };  // batch1_all: every key of batch 1 masked, its rows fully masked
  struct Case {
    int64_t B, H, T, S, D;
    bool causal;
    Mask mask;
    DType dt;
    float dropout;  // the same Philox mask as the CPU's
  };
  const Case cases[] = {
      {2, 3, 37, 45, 64, true, padding, DType::f32, 0.f},  // prefix of 8 keys, padding in the mask
      {1, 2, 70, 70, 32, true, none, DType::f32, 0.f},     // plain causal, several tiles
      {2, 2, 20, 33, 128, false, none, DType::f32, 0.f},
      {2, 3, 37, 45, 64, true, padding, DType::bf16, 0.f},
      {2, 3, 37, 45, 64, true, padding, DType::f32, 0.2f},
      {1, 2, 70, 70, 32, true, none, DType::bf16, 0.1f},
      {2, 3, 37, 45, 64, true, padding, DType::f64, 0.f},  // gradient checks run in f64
      {2, 2, 20, 33, 128, false, none, DType::f64, 0.1f},  // f64 at the largest head: over 48 KiB of shared memory
      {2, 2, 19, 40, 64, true, batch1_all, DType::f32, 0.f},   // fully masked rows: lse -inf, out 0, no gradient
      {2, 2, 19, 40, 64, false, batch1_all, DType::f64, 0.f},
      {2, 4, 1, 1500, 64, true, padding, DType::f32, 0.f},     // one decode step against a long KV cache
      {2, 4, 1, 1500, 64, true, padding, DType::bf16, 0.f},
  };
  for (const Case& c : cases) {
    CAPTURE(c.T);
    CAPTURE(c.S);
    CAPTURE(c.D);
    CAPTURE(int(c.mask));
    CAPTURE(dtype_name(c.dt));
    CAPTURE(c.dropout);
    Tensor q = uniform({c.B, c.H, c.T, c.D}, 80, -1, 1, c.dt), k = uniform({c.B, c.H, c.S, c.D}, 81, -1, 1, c.dt),
           v = uniform({c.B, c.H, c.S, c.D}, 82, -1, 1, c.dt), gout = uniform({c.B, c.H, c.T, c.D}, 83, -1, 1, c.dt);
    std::vector<int32_t> mv(size_t(c.B * c.S), 1);
    for (int64_t s = 0; s < c.S; ++s)  // batch 1: every 5th key is padding (key 0 kept), or every key
      if (c.mask == batch1_all || (s % 5 == 1)) mv[size_t(c.S + s)] = 0;
    Tensor mask = Tensor::from_vector(mv, {c.B, c.S}), dmask = dev(mask);
    AttentionParams pc{float(1 / std::sqrt(double(c.D))), c.causal, c.mask != none ? &mask : nullptr, c.dropout, 31};
    AttentionParams pg = pc;
    pg.key_mask = c.mask != none ? &dmask : nullptr;
    // The CPU reference runs in f32 (it has no bf16 attention), or f64, on the same, rounded, inputs;
    // lse is in that type on both devices.
    const DType ref = c.dt == DType::f64 ? DType::f64 : DType::f32;
    const double tol = tol_of(c.dt);
    Tensor qf = q.to(ref), kf = k.to(ref), vf = v.to(ref), gf = gout.to(ref);
    Tensor wo = Tensor::empty(q.shape(), ref), wl = Tensor::empty({c.B, c.H, c.T}, ref);
    Tensor go = Tensor::empty(q.shape(), c.dt, kCUDA), gl = Tensor::empty({c.B, c.H, c.T}, ref, kCUDA);
    cpu().attention(qf, kf, vf, pc, wo, wl);
    gpu().attention(dev(q), dev(k), dev(v), pg, go, gl);
    expect_close(go, wo, tol, "out");
    expect_close(gl, wl, tol, "lse");
    Tensor wq = empty_like(qf, kCPU), wk = empty_like(kf, kCPU), wv = empty_like(vf, kCPU);
    Tensor gq = empty_like(q, kCUDA), gk = empty_like(k, kCUDA), gv = empty_like(v, kCUDA);
    cpu().attention_backward(qf, kf, vf, wo, wl, gf, pc, wq, wk, wv);
    gpu().attention_backward(dev(q), dev(k), dev(v), go, gl, dev(gout), pg, gq, gk, gv);
    expect_close(gq, wq, tol, "gq");
    expect_close(gk, wk, tol, "gk");
    expect_close(gv, wv, tol, "gv");
    if (c.mask == batch1_all) {  // independent of the CPU: a row that sees no key has lse -inf and out 0
      std::vector<double> lse = host_doubles(gl), out = host_doubles(go);
      for (size_t i = size_t(c.H * c.T); i < lse.size(); ++i) CHECK(lse[i] == -INFINITY);
      for (size_t i = size_t(c.H * c.T * c.D); i < out.size(); ++i) CHECK(out[i] == 0.0);
    }
  }
}

TEST_CASE("attention: a key mask on the CPU is an error, not a host pointer in a kernel") {
  Tensor q = dev(uniform({1, 1, 4, 8}, 84)), k = dev(uniform({1, 1, 6, 8}, 85));
  Tensor mask = Tensor::full({1, 6}, 1.0, DType::i32);  // on the CPU
  AttentionParams p{0.35f, true, &mask, 0.f, 0};
  CHECK_THROWS_WITH_AS(ops::attention(q, k, k, p), doctest::Contains("key_mask is on cpu"), Error);
  Tensor out = Tensor::empty(q.shape(), DType::f32, kCUDA), lse = Tensor::empty({1, 1, 4}, DType::f32, kCUDA);
  CHECK_THROWS_AS(gpu().attention(q, k, k, p, out, lse), Error);
}

TEST_CASE("ops keep row statistics in f32 for bf16 inputs (lse, mean, rstd)") {
  Tensor q = dev(uniform({1, 2, 5, 16}, 86, -1, 1, DType::bf16)), k = dev(uniform({1, 2, 7, 16}, 87, -1, 1, DType::bf16));
  CHECK(ops::attention(q, k, k, AttentionParams{0.25f, true, nullptr, 0.f, 0}).lse.dtype() == DType::f32);
  Tensor x = dev(uniform({3, 40}, 88, -1, 1, DType::bf16));
  ops::LayerNormOut ln = ops::layer_norm(x, Tensor(), Tensor(), 1e-5f);
  CHECK(ln.mean.dtype() == DType::f32);
  CHECK(ln.rstd.dtype() == DType::f32);
}

TEST_CASE("matmul with K = 0 writes zeros (beta 0) over whatever out held, as the CPU") {
  Tensor a = Tensor::empty({2, 3, 0}), b = Tensor::empty({1, 0, 4});
  Tensor w = Tensor::full({2, 3, 4}, NAN), g = dev(w);
  cpu().matmul(a, false, b, false, w, 1.f, 0.f);
  gpu().matmul(dev(a), false, dev(b), false, g, 1.f, 0.f);
  expect_close(g, Tensor::zeros({2, 3, 4}), 0, "K = 0, beta 0");
  expect_close(g, w, 0, "as the CPU");
  Tensor g2 = dev(Tensor::full({2, 3, 4}, 2.0));
  gpu().matmul(dev(a), false, dev(b), false, g2, 1.f, 0.5f);
  expect_close(g2, Tensor::full({2, 3, 4}, 1.0), 0, "K = 0, beta 0.5");
}

TEST_CASE("tensors past the grid-stride caps (65535 * 8 blocks of 256 threads)") {
  const int64_t n = int64_t(65535) * 8 * 256 + 4099;  // every thread walks twice; 537 MB of f32
  Tensor x = uniform({n}, 89, -3, 3);
  Tensor w = empty_like(x, kCPU), g = empty_like(x, kCUDA);
  cpu().unary(UnaryOp::gelu, x, w);
  gpu().unary(UnaryOp::gelu, dev(x), g);
  expect_close(g, w, kF32, "gelu");
  Tensor gb = Tensor::empty({n}, DType::bf16, kCUDA), wb = Tensor::empty({n}, DType::bf16);
  cpu().copy(x, wb);
  gpu().copy(dev(x), gb);
  expect_close(gb, wb, 0, "copy to bf16");
}

TEST_CASE("adamw: five steps as on the CPU") {
  const int64_t n = 3001;
  Tensor p = uniform({n}, 90), m = Tensor::zeros({n}), v = Tensor::zeros({n});
  Tensor dp = dev(p), dm = dev(m), dv = dev(v);
  for (int64_t step = 1; step <= 5; ++step) {
    Tensor g = uniform({n}, 91 + uint64_t(step));
    cpu().adamw(p, g, m, v, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, step);
    gpu().adamw(dp, dev(g), dm, dv, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, step);
  }
  expect_close(dp, p, kF32, "param");
  expect_close(dm, m, kF32, "m");
  expect_close(dv, v, kF32, "v");
}

int main(int argc, char** argv) { return test::run_on_gpu(argc, argv); }
