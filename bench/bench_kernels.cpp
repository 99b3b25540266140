// Micro-benchmarks of the CPU kernels at GPT-2 124M training shapes
// (B*T = 256 rows, C = 768, V = 50257). GEMMs report GFLOP/s and, beside each,
// cblas_sgemm called directly on the same shape, so our overhead shows as a
// percentage of BLAS; memory-bound kernels report GB/s of bytes touched and
// `of_copy`, that rate over a plain parallel copy's moving the same bytes,
// measured in the same run (the target is at least 0.6).
// Wall-clock time (UseRealTime), since the kernels run on several threads.
//
//   OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2 ./bench_kernels
//
// OMP_WAIT_POLICY=passive matters: by default libgomp's idle threads spin
// after each parallel region and steal the cores from OpenBLAS's threads in the
// GEMM that follows (and spin through whole time slices on a busy machine).
// With 2 threads on a loaded 2-core machine, passive made a 768x768 GEMM after
// an OpenMP region 4x faster and layer norm 80x faster.
#include <benchmark/benchmark.h>
#include "engine/cpu/cblas.h"

#include <chrono>
#include <cmath>
#include <map>

#include "engine/backend.h"
#include "engine/ops.h"

using namespace mp;

namespace {

Tensor randn(const Shape& shape, uint64_t seed, double std = 1.0) {
  Tensor t = Tensor::empty(shape);
  ops::random(t, Distribution::normal, 0, std, seed);
  return t;
}

void gflops(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
void gbytes(benchmark::State& state, double bytes) {
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// ------------------------------------------------------------------- GEMM
// Args: M, K, N, tb (b stored (N, K)), bf16 weights.

void BM_matmul(benchmark::State& state) {
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  const bool tb = state.range(3), bf16w = state.range(4);
  Tensor a = randn({M, K}, 1);
  Tensor b = randn(tb ? Shape{N, K} : Shape{K, N}, 2, 0.02);
  if (bf16w) b = b.to(DType::bf16);
  Tensor out = Tensor::empty({M, N});
  for (auto _ : state) {
    ops::matmul_into(a, false, b, tb, out, 1.f, 0.f);
    benchmark::DoNotOptimize(out.raw());
  }
  gflops(state, 2.0 * double(M) * double(N) * double(K));
}

void BM_cblas_sgemm(benchmark::State& state) {
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  const bool tb = state.range(3);
  Tensor a = randn({M, K}, 1), b = randn(tb ? Shape{N, K} : Shape{K, N}, 2, 0.02), out = Tensor::empty({M, N});
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K), 1.f,
                a.data<float>(), int(K), b.data<float>(), int(tb ? K : N), 0.f, out.data<float>(), int(N));
    benchmark::DoNotOptimize(out.raw());
  }
  gflops(state, 2.0 * double(M) * double(N) * double(K));
}

// bf16 from bf_lo to bf_hi: 0 = f32 weights, 1 = bf16 weights.
void gemm_shapes(benchmark::internal::Benchmark* b, int bf_lo, int bf_hi) {
  b->ArgNames({"M", "K", "N", "tb", "bf16"});
  for (int bf = bf_lo; bf <= bf_hi; ++bf) {
    b->Args({256, 768, 2304, 0, bf});    // attn c_attn
    b->Args({256, 768, 768, 0, bf});     // attn c_proj
    b->Args({256, 768, 3072, 0, bf});    // mlp c_fc
    b->Args({256, 3072, 768, 0, bf});    // mlp c_proj
    b->Args({256, 768, 50257, 1, bf});   // lm head (tied wte, (V, C))
  }
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

// The alternative to matmul's blockwise widening of bf16 weights: widen the
// whole weight to f32 once per call (V x C x 4 bytes of workspace for the lm head), then sgemm.
void BM_bf16_widen_all_then_sgemm(benchmark::State& state) {
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  const bool tb = state.range(3);
  Tensor a = randn({M, K}, 1);
  Tensor b = randn(tb ? Shape{N, K} : Shape{K, N}, 2, 0.02).to(DType::bf16);
  Tensor out = Tensor::empty({M, N});
  for (auto _ : state) {
    Tensor b32 = b.to(DType::f32);
    ops::matmul_into(a, false, b32, tb, out, 1.f, 0.f);
    benchmark::DoNotOptimize(out.raw());
  }
  gflops(state, 2.0 * double(M) * double(N) * double(K));
}

// The cost of the GEMM library's per-call work. Hit: a tiny product whose
// primitive is cached (the lookup, the memory descriptors, the call). Miss:
// every call a shape not seen before (a new primitive descriptor, and the
// kernel's JIT on its first run).
void BM_matmul_cached_call(benchmark::State& state) {
  Tensor a = randn({8, 64}, 1), b = randn({64, 64}, 2), out = Tensor::empty({8, 64});
  for (auto _ : state) {
    ops::matmul_into(a, false, b, false, out, 1.f, 0.f);
    benchmark::DoNotOptimize(out.raw());
  }
}

void BM_matmul_new_shape(benchmark::State& state) {
  static int64_t m = 8;  // grows across runs, so every call is a first
  Tensor a = randn({1 << 14, 64}, 1), b = randn({64, 64}, 2), out = Tensor::empty({1 << 14, 64});
  for (auto _ : state) {
    ++m;  // a's first m rows: a new shape, no copy
    ops::matmul_into(a.narrow(0, 0, m), false, b, false, out.narrow(0, 0, m), 1.f, 0.f);
    benchmark::DoNotOptimize(out.raw());
  }
}

BENCHMARK(BM_matmul_cached_call)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_matmul_new_shape)->UseRealTime()->Unit(benchmark::kMicrosecond)->Iterations(200);
BENCHMARK(BM_matmul)->Apply([](benchmark::internal::Benchmark* b) { gemm_shapes(b, 0, 1); });
BENCHMARK(BM_cblas_sgemm)->Apply([](benchmark::internal::Benchmark* b) { gemm_shapes(b, 0, 0); });
BENCHMARK(BM_bf16_widen_all_then_sgemm)->Apply([](benchmark::internal::Benchmark* b) { gemm_shapes(b, 1, 1); });

// ------------------------------------------------------ memory bandwidth
// The yardstick for the memory-bound kernels below: a plain parallel copy
// (dst[i] = src[i], OpenMP over the same threads the kernels use), GB/s of
// bytes read plus written. Arg: floats per array. 256 x 3072 floats (3 MiB)
// is the size of the MLP activations the elementwise kernels see (caches
// help); 64 Mi floats (256 MiB per array) measures main memory.

void parallel_copy(const float* s, float* d, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) d[i] = s[i];
  benchmark::DoNotOptimize(d);
  benchmark::ClobberMemory();
}

void BM_copy_bandwidth(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor src = Tensor::full({n}, 1.0), dst = Tensor::zeros({n});
  for (auto _ : state) parallel_copy(src.data<float>(), dst.data<float>(), n);
  gbytes(state, 2.0 * double(n) * 4);
}
BENCHMARK(BM_copy_bandwidth)->Arg(256 * 3072)->Arg(int64_t(64) << 20)->UseRealTime()->Unit(benchmark::kMicrosecond);

using Clock = std::chrono::steady_clock;

// Seconds a parallel copy takes to move `bytes` (half read, half written):
// the best of 20 after a warm-up, measured once per size in this run.
double copy_seconds(double bytes) {
  static std::map<double, double> measured;
  if (auto it = measured.find(bytes); it != measured.end()) return it->second;
  const int64_t n = std::max<int64_t>(1, int64_t(bytes / 8));
  Tensor src = Tensor::full({n}, 1.0), dst = Tensor::zeros({n});
  double best = 1e30;
  for (int rep = 0; rep < 21; ++rep) {
    const auto t0 = Clock::now();
    parallel_copy(src.data<float>(), dst.data<float>(), n);
    if (rep) best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return measured[bytes] = best;
}

// Runs a memory-bound kernel and reports GB/s of `bytes` touched per call and
// of_copy, the copy's time for those bytes over the kernel's mean time.
template <class Kernel>
void memory_bound(benchmark::State& state, double bytes, Kernel kernel) {
  const auto t0 = Clock::now();
  for (auto _ : state) kernel();
  const double per_call = std::chrono::duration<double>(Clock::now() - t0).count() / double(state.iterations());
  gbytes(state, bytes);
  state.counters["of_copy"] = copy_seconds(bytes) / per_call;
}

// ------------------------------------------------------------- elementwise
// The residual add (B*T, C) and the bias add of a Linear (a (C) row
// broadcast over B*T rows, added in place), at the MLP's width.

void BM_add(benchmark::State& state) {
  const int64_t N = 256, C = state.range(0);
  Tensor a = randn({N, C}, 15), b = randn({N, C}, 16), out = Tensor::empty({N, C});
  // read a and b, write out
  memory_bound(state, 3.0 * double(N * C) * 4, [&] { backend(kCPU).binary(BinaryOp::add, a, b, out); });
}
BENCHMARK(BM_add)->Arg(768)->Arg(3072)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_bias_add_inplace(benchmark::State& state) {
  const int64_t N = 256, C = state.range(0);
  Tensor bias = randn({C}, 17), y = randn({N, C}, 18);
  // read and write y
  memory_bound(state, 2.0 * double(N * C) * 4, [&] { ops::axpby(1.f, bias, 1.f, y); });
}
BENCHMARK(BM_bias_add_inplace)->Arg(768)->Arg(3072)->UseRealTime()->Unit(benchmark::kMicrosecond);

// --------------------------------------------------------- row-wise kernels

void BM_layer_norm_forward(benchmark::State& state) {
  const int64_t N = 256, C = 768;
  Tensor x = randn({N, C}, 3), w = randn({C}, 4), b = randn({C}, 5);
  Tensor y = Tensor::empty({N, C}), mean = Tensor::empty({N}), rstd = Tensor::empty({N});
  // read x, write y
  memory_bound(state, 2.0 * N * C * 4, [&] { backend(kCPU).layer_norm(x, w, b, 1e-5f, y, mean, rstd); });
}
BENCHMARK(BM_layer_norm_forward)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_layer_norm_backward(benchmark::State& state) {
  const int64_t N = 256, C = 768;
  Tensor x = randn({N, C}, 3), w = randn({C}, 4), b = randn({C}, 5), gy = randn({N, C}, 6);
  auto r = ops::layer_norm(x, w, b, 1e-5f);
  Tensor gx = Tensor::empty({N, C}), gw = Tensor::zeros({C}), gb = Tensor::zeros({C});
  // read gy and x, write gx
  memory_bound(state, 3.0 * N * C * 4, [&] { backend(kCPU).layer_norm_backward(gy, x, w, r.mean, r.rstd, gx, gw, gb); });
}
BENCHMARK(BM_layer_norm_backward)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_gelu_forward(benchmark::State& state) {
  Tensor x = randn({256, 3072}, 7), y = Tensor::empty({256, 3072});
  memory_bound(state, 2.0 * 256 * 3072 * 4, [&] { backend(kCPU).unary(UnaryOp::gelu, x, y); });
}
BENCHMARK(BM_gelu_forward)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_gelu_backward(benchmark::State& state) {
  Tensor x = randn({256, 3072}, 7), gy = randn({256, 3072}, 8), gx = Tensor::empty({256, 3072});
  memory_bound(state, 3.0 * 256 * 3072 * 4, [&] { backend(kCPU).unary_backward(UnaryOp::gelu, x, gy, gx); });
}
BENCHMARK(BM_gelu_backward)->UseRealTime()->Unit(benchmark::kMicrosecond);

// Dropout (p = 0.1) of the MLP activations, a new mask each call: read x, write y.
void BM_dropout(benchmark::State& state) {
  Tensor x = randn({256, 3072}, 7), y = Tensor::empty({256, 3072});
  uint64_t offset = 0;
  memory_bound(state, 2.0 * 256 * 3072 * 4, [&] { backend(kCPU).dropout(x, 0.1f, 42, offset += 256 * 3072, y); });
}
BENCHMARK(BM_dropout)->UseRealTime()->Unit(benchmark::kMicrosecond);

// Mixed precision's casts, at a weight's size (768, 3072): f32 -> bf16 for a
// bf16 GEMM (to_bf16:1) and bf16 -> f32 (to_bf16:0). 6 bytes per element.
void BM_cast(benchmark::State& state) {
  const bool to_bf16 = state.range(0);
  Tensor f32 = randn({768, 3072}, 11), bf16 = f32.to(DType::bf16);
  const Tensor& src = to_bf16 ? f32 : bf16;
  const Tensor& dst = to_bf16 ? bf16 : f32;
  memory_bound(state, 6.0 * 768 * 3072, [&] { backend(kCPU).copy(src, dst); });
}
BENCHMARK(BM_cast)->ArgName("to_bf16")->Arg(1)->Arg(0)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_softmax(benchmark::State& state) {
  const int64_t N = 256, V = 50257;
  Tensor x = randn({N, V}, 9), y = Tensor::empty({N, V});
  memory_bound(state, 2.0 * N * V * 4, [&] { backend(kCPU).softmax(x, y, false); });
}
BENCHMARK(BM_softmax)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_cross_entropy_forward(benchmark::State& state) {
  const int64_t N = 256, V = 50257;
  Tensor logits = randn({N, V}, 10);
  std::vector<int32_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[size_t(i)] = int32_t(i * 193 % V);
  Tensor targets = Tensor::from_vector(t, {N}), losses = Tensor::empty({N}), lse = Tensor::empty({N});
  memory_bound(state, 1.0 * N * V * 4, [&] { backend(kCPU).cross_entropy(logits, targets, -100, losses, lse); });
}
BENCHMARK(BM_cross_entropy_forward)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_cross_entropy_backward(benchmark::State& state) {
  const int64_t N = 256, V = 50257;
  Tensor logits = randn({N, V}, 10), g = Tensor::empty({N, V});
  std::vector<int32_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[size_t(i)] = int32_t(i * 193 % V);
  Tensor targets = Tensor::from_vector(t, {N}), losses = Tensor::empty({N}), lse = Tensor::empty({N});
  backend(kCPU).cross_entropy(logits, targets, -100, losses, lse);
  Tensor gscale = Tensor::from_vector(std::vector<float>{1.f / N}, {1});  // (1)
  // read logits, write glogits
  memory_bound(state, 2.0 * N * V * 4,
               [&] { backend(kCPU).cross_entropy_backward(logits, targets, lse, -100, gscale, g); });
}
BENCHMARK(BM_cross_entropy_backward)->UseRealTime()->Unit(benchmark::kMillisecond);

// --------------------------------------------------------------- optimizer

void BM_adamw_124M(benchmark::State& state) {
  const int64_t n = 124439808;  // GPT-2 124M parameters
  Tensor p = Tensor::zeros({n}), g = Tensor::full({n}, 0.01), m = Tensor::zeros({n}), v = Tensor::zeros({n});
  int64_t step = 0;
  // read p, g, m, v; write p, m, v
  memory_bound(state, 28.0 * double(n), [&] { backend(kCPU).adamw(p, g, m, v, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.1f, ++step); });
}
BENCHMARK(BM_adamw_124M)->UseRealTime()->Unit(benchmark::kMillisecond);

// --------------------------------------------------------------- attention
// Args: B, H, T, D (causal, S = T). FLOPs: QK^T and PV over the causal half.

double attention_flops(int64_t B, int64_t H, int64_t T, int64_t D) {
  return 2.0 * 2.0 * double(B * H) * double(T) * double(T + 1) / 2 * double(D);
}

void BM_attention_forward(benchmark::State& state) {
  const int64_t B = state.range(0), H = state.range(1), T = state.range(2), D = state.range(3);
  Tensor q = randn({B, H, T, D}, 11), k = randn({B, H, T, D}, 12), v = randn({B, H, T, D}, 13);
  Tensor out = Tensor::empty({B, H, T, D}), lse = Tensor::empty({B, H, T});
  AttentionParams p;
  p.scale = 1.f / std::sqrt(float(D));
  for (auto _ : state) backend(kCPU).attention(q, k, v, p, out, lse);
  gflops(state, attention_flops(B, H, T, D));
}
BENCHMARK(BM_attention_forward)
    ->ArgNames({"B", "H", "T", "D"})
    ->Args({4, 12, 64, 64})
    ->Args({1, 12, 1024, 64})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_attention_backward(benchmark::State& state) {
  const int64_t B = state.range(0), H = state.range(1), T = state.range(2), D = state.range(3);
  Tensor q = randn({B, H, T, D}, 11), k = randn({B, H, T, D}, 12), v = randn({B, H, T, D}, 13);
  Tensor gout = randn({B, H, T, D}, 14);
  AttentionParams p;
  p.scale = 1.f / std::sqrt(float(D));
  auto r = ops::attention(q, k, v, p);
  Tensor gq = Tensor::empty(q.shape()), gk = Tensor::empty(k.shape()), gv = Tensor::empty(v.shape());
  for (auto _ : state) backend(kCPU).attention_backward(q, k, v, r.out, r.lse, gout, p, gq, gk, gv);
  gflops(state, 2.0 * attention_flops(B, H, T, D));  // recompute QK^T, and dV, dP, dQ, dK: ~2.5x; counted as 2x
}
BENCHMARK(BM_attention_backward)
    ->ArgNames({"B", "H", "T", "D"})
    ->Args({4, 12, 64, 64})
    ->Args({1, 12, 1024, 64})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
