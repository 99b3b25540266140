// Matrix products against a naive triple loop in double: transposes, batches,
// a shared weight, alpha/beta, f64, bf16 weights, bf16 operands (mixed
// precision), and which GEMM kernel runs on this CPU. meson test runs this
// suite also under ONEDNN_MAX_CPU_ISA=AVX2 and MP_GEMM=openblas, so that the
// lower paths are checked on any machine.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>

#include "engine/error.h"
#include "engine/ops.h"
#include "tests/engine/reference.h"

using namespace mp;
using namespace mp::test;

// Naive reference: a (batch_a, ., .) and b (batch_b, ., .) as stored, transposes
// applied by index; batch 1 is shared.
static std::vector<double> naive(const Tensor& a, bool ta, const Tensor& b, bool tb, int64_t batch) {
  std::vector<double> va = values(a), vb = values(b);
  const int64_t ar = a.size(-2), ac = a.size(-1), br = b.size(-2), bc = b.size(-1);
  const int64_t M = ta ? ac : ar, K = ta ? ar : ac, N = tb ? br : bc;
  const bool shared_a = a.dim() == 2 || a.numel() == ar * ac, shared_b = b.dim() == 2 || b.numel() == br * bc;
  std::vector<double> out(size_t(batch * M * N));
  for (int64_t i = 0; i < batch; ++i) {
    const double* A = va.data() + (shared_a ? 0 : i * ar * ac);
    const double* B = vb.data() + (shared_b ? 0 : i * br * bc);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += (ta ? A[k * ac + m] : A[m * ac + k]) * (tb ? B[n * bc + k] : B[k * bc + n]);
        out[size_t((i * M + m) * N + n)] = s;
      }
  }
  return out;
}

TEST_CASE("matmul 2-D with every transpose combination") {
  const int64_t M = 5, K = 7, N = 3;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor a = rand_tensor(ta ? Shape{K, M} : Shape{M, K}, 1);
      Tensor b = rand_tensor(tb ? Shape{N, K} : Shape{K, N}, 2);
      Tensor c = ops::matmul(a, b, ta, tb);
      CHECK(c.shape() == Shape{M, N});
      check_close(c, naive(a, ta, b, tb, 1), 1e-5);
    }
}

TEST_CASE("batched matmul, shared weight (the Linear path), shared left side") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor a = rand_tensor(ta ? Shape{2, 3, 6, 4} : Shape{2, 3, 4, 6}, 3);  // (2, 3) batch
      Tensor bb = rand_tensor(tb ? Shape{2, 3, 5, 6} : Shape{2, 3, 6, 5}, 4);
      Tensor w = rand_tensor(tb ? Shape{5, 6} : Shape{6, 5}, 5);
      Tensor c = ops::matmul(a, bb, ta, tb);
      CHECK(c.shape() == Shape{2, 3, 4, 5});
      check_close(c, naive(a, ta, bb, tb, 6), 1e-5);
      Tensor cw = ops::matmul(a, w, ta, tb);
      CHECK(cw.shape() == Shape{2, 3, 4, 5});
      check_close(cw, naive(a, ta, w, tb, 6), 1e-5);
    }
  Tensor a = rand_tensor({4, 6}, 6);
  Tensor b = rand_tensor({3, 6, 2}, 7);
  Tensor c = ops::matmul(a, b);
  CHECK(c.shape() == Shape{3, 4, 2});
  check_close(c, naive(a, false, b, false, 3), 1e-5);
}

TEST_CASE("matmul on non-contiguous inputs and with alpha, beta") {
  Tensor a = rand_tensor({7, 5}, 8).transpose(0, 1);  // (5, 7) strided
  Tensor b = rand_tensor({7, 3}, 9);
  check_close(ops::matmul(a, b), naive(a.contiguous(), false, b, false, 1), 1e-5);

  Tensor out = rand_tensor({5, 3}, 10);
  std::vector<double> old = values(out), ab = naive(a.contiguous(), false, b, false, 1), want;
  for (size_t i = 0; i < old.size(); ++i) want.push_back(0.5 * ab[i] + 2 * old[i]);
  ops::matmul_into(a, false, b, false, out, 0.5f, 2.f);
  check_close(out, want, 1e-5);
}

TEST_CASE("matmul f64") {
  Tensor a = rand_tensor({3, 4, 6}, 11, DType::f64), b = rand_tensor({5, 6}, 12, DType::f64);
  Tensor c = ops::matmul(a, b, false, true);
  CHECK(c.dtype() == DType::f64);
  check_close(c, naive(a, false, b, true, 3), 1e-12);
}

TEST_CASE("matmul with bf16 weights matches f32 within bf16 precision") {
  for (bool tb : {false, true}) {
    // K = 2048 makes the kernel widen the weight in two column blocks of 352.
    const int64_t K = 2048, N = 700;
    Tensor a = rand_tensor({2, 9, K}, 13);
    Tensor w32 = rand_tensor(tb ? Shape{N, K} : Shape{K, N}, 14);
    Tensor w16 = w32.to(DType::bf16);
    Tensor c = ops::matmul(a, w16, false, tb);
    CHECK(c.dtype() == DType::f32);
    // Exact against the bf16 values widened; close to the f32 weights.
    check_close(c, naive(a, false, w16.to(DType::f32), tb, 2), 1e-4, 1e-5);
    std::vector<double> got = values(c), want = naive(a, false, w32, tb, 2);
    double err = 0, norm = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      err += (got[i] - want[i]) * (got[i] - want[i]);
      norm += want[i] * want[i];
    }
    CHECK(std::sqrt(err / norm) < 1e-2);  // within 1e-2 relative (bf16 keeps 8 bits of mantissa)
    // Transposed a with a bf16 weight, batched.
    Tensor at = rand_tensor({2, K, 9}, 15);
    check_close(ops::matmul(at, w16, true, tb), naive(at, true, w16.to(DType::f32), tb, 2), 1e-4, 1e-5);
  }
}

TEST_CASE("matmul with both operands bf16 (mixed precision) accumulates in f32") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int64_t M = 33, K = 300, N = 70;
      Tensor a = rand_tensor(ta ? Shape{3, K, M} : Shape{3, M, K}, 21).to(DType::bf16);
      Tensor w = rand_tensor(tb ? Shape{N, K} : Shape{K, N}, 22).to(DType::bf16);
      Tensor bb = rand_tensor(tb ? Shape{3, N, K} : Shape{3, K, N}, 23).to(DType::bf16);
      // Exact products of bf16 values, summed in f32: close to the double sum of the same values.
      check_close(ops::matmul(a, w, ta, tb), naive(a.to(DType::f32), ta, w.to(DType::f32), tb, 3), 1e-4, 1e-5);
      check_close(ops::matmul(a, bb, ta, tb), naive(a.to(DType::f32), ta, bb.to(DType::f32), tb, 3), 1e-4, 1e-5);
      // alpha and beta, as attention's backward and gradient accumulation use them.
      Tensor out = rand_tensor({3, M, N}, 24);
      std::vector<double> old = values(out), ab = naive(a.to(DType::f32), ta, w.to(DType::f32), tb, 3), want;
      for (size_t i = 0; i < old.size(); ++i) want.push_back(0.25 * ab[i] + 1.0 * old[i]);
      ops::matmul_into(a, ta, w, tb, out, 0.25f, 1.f);
      check_close(out, want, 1e-4, 1e-5);
    }
}

// The CPU's feature flags, from /proc/cpuinfo.
static bool cpu_has(const std::string& flag) {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("flags", 0) == 0) return (line + " ").find(" " + flag + " ") != std::string::npos;
  return false;
}

TEST_CASE("the GEMMs run a kernel for this CPU's vector instructions, never a generic one") {
  const std::string f32 = ops::gemm_implementation(DType::f32, kCPU);
  const std::string bf16 = ops::gemm_implementation(DType::bf16, kCPU);
  INFO("f32: ", f32, "; bf16: ", bf16);
  // oneDNN's reference kernels, and OpenBLAS's cores for CPUs older than AVX2.
  for (const char* generic : {"ref:", "Prescott", "Katmai", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom",
                              "Banias", "Opteron", "Barcelona"}) {
    CHECK(f32.find(generic) == std::string::npos);
    CHECK(bf16.find(generic) == std::string::npos);
  }
  const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
  const char* lib = std::getenv("MP_GEMM");
  if (lib != nullptr && std::string(lib) == "openblas") {
    CHECK(f32.rfind("openblas ", 0) == 0);
    return;
  }
  CHECK(f32.rfind("onednn ", 0) == 0);
  if (cap == nullptr && cpu_has("avx512f")) CHECK(f32.find("avx512") != std::string::npos);
  if (cap == nullptr && (cpu_has("avx512_bf16") || cpu_has("amx_bf16"))) {
    // Native bf16 products: oneDNN's avx512_core_bf16 or AMX kernels, no widening.
    CHECK(bf16.rfind("onednn ", 0) == 0);
    CHECK((bf16.find("bf16") != std::string::npos || bf16.find("amx") != std::string::npos));
  }
  if (cap != nullptr && std::string(cap) == "AVX2")  // no bf16 products: widened for an f32 GEMM
    CHECK(bf16.find("widened to f32") != std::string::npos);
}

TEST_CASE("matmul shape errors name the shapes") {
  CHECK_THROWS_WITH_AS(ops::matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})),
                       "matmul: (2, 3) @ (4, 5): inner dimensions 3 and 4 differ", Error);
  CHECK_THROWS_WITH_AS(ops::matmul(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 5})),
                       "matmul: (2, 2, 3) @ (3, 3, 5): batch dimensions (2) and (3) differ", Error);
  CHECK_THROWS_AS(ops::matmul(Tensor::zeros({3}), Tensor::zeros({3, 5})), Error);
}

TEST_CASE("matmul with an empty inner dimension gives zeros") {
  Tensor c = ops::matmul(Tensor::zeros({3, 0}), Tensor::zeros({0, 2}));
  CHECK(values(c) == std::vector<double>(6, 0.0));
}
