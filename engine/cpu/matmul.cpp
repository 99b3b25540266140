// Batched matrix products: out = alpha * op(a) op(b) + beta * out, shapes as
// in engine/matmul_dims.h. Which library runs a call (gemm_library):
//
// - f32 @ f32 and bf16 @ bf16 -> f32: oneDNN (engine/cpu/onednn_gemm.h),
//   which picks its kernel by CPU feature (AMX, AVX512-BF16, AVX-512, AVX2),
//   unless it has only its generic reference code for the call (bf16 on a
//   CPU without bf16 instructions) or MP_GEMM=openblas says otherwise.
// - otherwise OpenBLAS: f64 (gradient checks) with cblas_dgemm, f32 with
//   cblas_sgemm. bf16 weights under f32 activations (a frozen base stored in
//   half the bytes) are widened to f32 one block of columns at a time into a
//   small workspace, then multiplied with sgemm, so no f32 copy of the whole
//   weight ever exists; bf16 activations are widened whole.
//
// Transposes are never copied: they become transpose flags or strides. A
// Linear layer's x (B*T, C) @ W is the hot path: when b is one shared matrix
// and a is not transposed, the whole batch is a single GEMM of (batch*M)
// rows. Both libraries run their own threads: they are always called
// outside OpenMP regions.
#include "engine/cpu/cblas.h"

#include <algorithm>
#include <cassert>
#include <optional>
#include <string>
#include <cstdlib>
#include <string_view>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/onednn_gemm.h"
#include "engine/matmul_dims.h"

namespace mp::cpu {

namespace {

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, float beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

// The sizes of one call (engine/matmul_dims.h) with the transpose flags.
struct Dims : MatmulDims {
  bool ta, tb;
  int64_t lda() const { return std::max<int64_t>(1, ta ? M : K); }  // row length of a as stored
  int64_t ldb() const { return std::max<int64_t>(1, tb ? K : N); }
  int64_t a_stride() const { return batch_a == 1 ? 0 : M * K; }  // elements between batch entries
  int64_t b_stride() const { return batch_b == 1 ? 0 : K * N; }
};

// MP_GEMM=openblas keeps every call on OpenBLAS (and the widening path for
// bf16); unset or "onednn", oneDNN runs what it has a real kernel for.
bool onednn_allowed() {
  static const bool allowed = [] {
    const char* v = std::getenv("MP_GEMM");
    if (v == nullptr || *v == 0 || std::string_view(v) == "onednn") return true;
    if (std::string_view(v) == "openblas") return false;
    fail("MP_GEMM={}: expected onednn or openblas", v);
  }();
  return allowed;
}

// The call as oneDNN sees it, when both operands share a dtype and out is f32.
std::optional<GemmShape> onednn_call(const Dims& d, DType ta, DType tb, DType to, float alpha, float beta) {
  if (ta != tb || to != DType::f32 || (ta != DType::f32 && ta != DType::bf16) || !onednn_allowed()) return {};
  GemmShape s{ta, d.ta, d.tb, d.batch, d.M, d.N, d.K, d.batch_a, d.batch_b, alpha, beta, d.lda(), d.ldb(), d.N};
  if (!onednn_gemm_available(s)) return {};
  return s;
}

// All-f32 or all-f64: one GEMM per batch entry, or one GEMM for the whole batch.
template <class T>
void matmul_same_type(const Dims& d, const T* A, const T* B, T* C, float alpha, float beta) {
  if (d.batch > 1 && d.batch_b == 1 && d.batch_a == d.batch && !d.ta) {
    // a (batch, M, K) is one (batch*M, K) matrix; b is shared.
    gemm(false, d.tb, d.batch * d.M, d.N, d.K, alpha, A, d.lda(), B, d.ldb(), beta, C, d.N);
    return;
  }
  for (int64_t i = 0; i < d.batch; ++i)
    gemm(d.ta, d.tb, d.M, d.N, d.K, alpha, A + i * d.a_stride(), d.lda(), B + i * d.b_stride(), d.ldb(), beta,
         C + i * d.M * d.N, d.N);
}

// Widen n bf16 values to f32 (in parallel; called outside any other OpenMP region).
void widen(const bf16* src, float* dst, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(src[i]);
}

// a f32, b bf16, out f32. For each batch entry of b and each block of nb
// output columns: widen b's block into a (K, nb) or (nb, K) f32 workspace and
// run sgemm on it, writing out[:, n0:n0+nb].
void matmul_bf16_b(const Dims& d, const float* A, const bf16* B, float* C, float alpha, float beta, Device device) {
  const int64_t nb = weight_block_width(d.K, d.N);
  Tensor ws = workspace({d.K * nb}, DType::f32, device);
  if (dry_run(ws)) return;
  float* W = ws.data<float>();  // (K, nb) or (nb, K)
  // When b is shared and a is not transposed, all of a is one (batch*M, K) matrix.
  const bool flatten = d.batch_b == 1 && d.batch_a == d.batch && !d.ta;
  const int64_t outer = flatten ? 1 : d.batch;
  const int64_t rows = flatten ? d.batch * d.M : d.M;
  for (int64_t i = 0; i < outer; ++i) {
    const float* Ai = A + i * d.a_stride();
    const bf16* Bi = B + i * d.b_stride();
    float* Ci = C + i * d.M * d.N;
    for (int64_t n0 = 0; n0 < d.N; n0 += nb) {
      const int64_t n = std::min(nb, d.N - n0);
      if (d.tb) {  // b (N, K): rows n0..n0+n are contiguous
        widen(Bi + n0 * d.K, W, n * d.K);
      } else {  // b (K, N): a column block, one strip of n per row
#pragma omp parallel for schedule(static) if (d.K * n > (1 << 16))
        for (int64_t k = 0; k < d.K; ++k)
          for (int64_t j = 0; j < n; ++j) W[k * n + j] = bf16_to_float(Bi[k * d.N + n0 + j]);
      }
      gemm(d.ta, d.tb, rows, n, d.K, alpha, Ai, d.lda(), W, d.tb ? d.K : n, beta, Ci + n0, d.N);
    }
  }
}

}  // namespace

// About 4 MiB of f32 per block: big enough for an efficient GEMM, small next
// to the weight. Blocks of equal width (a multiple of 16), so no thin last block.
int64_t weight_block_width(int64_t K, int64_t N) {
  const int64_t nb_max = std::max<int64_t>(64, ((int64_t(1) << 20) / std::max<int64_t>(1, K)) / 16 * 16);
  const int64_t blocks = (N + nb_max - 1) / nb_max;
  return std::min(N, ((N + blocks - 1) / blocks + 15) / 16 * 16);
}

std::string gemm_implementation(DType dt) {
  const Dims d{{1, 256, 2304, 768, 1, 1}, false, false};  // x (B*T, C) @ c_attn's W (C, 3C) at B*T = 256
  if (auto s = onednn_call(d, dt, dt, DType::f32, 1.f, 0.f)) return "onednn " + onednn_gemm_impl(*s);
  const std::string blas = std::string("openblas ") + openblas_get_corename();
  return dt == DType::f32 ? blas : "widened to f32, " + blas;
}

bool bf16_gemm_native() {
  const Dims d{{1, 256, 2304, 768, 1, 1}, false, false};
  return onednn_call(d, DType::bf16, DType::bf16, DType::f32, 1.f, 0.f).has_value();
}

int64_t gemm_2d_workspace_elements(const GemmShape& s) {
  return onednn_allowed() && onednn_gemm_available(s) ? (onednn_gemm_scratchpad_bytes(s) + 3) / 4 : 0;
}

void gemm_2d(const GemmShape& s, const void* A, const void* B, float* C, Device device) {
  if (onednn_allowed() && onednn_gemm_available(s)) {
    onednn_gemm(s, A, B, C, device);
    return;
  }
  assert(s.dtype == DType::f32 && s.batch == 1);
  gemm(s.ta, s.tb, s.M, s.N, s.K, s.alpha, static_cast<const float*>(A), s.lda, static_cast<const float*>(B), s.ldb,
       s.beta, C, s.ldc);
}

void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out, float alpha, float beta) {
  const Dims d{matmul_dims(a, trans_a, b, trans_b, out), trans_a, trans_b};
  if (d.batch == 0 || d.M == 0 || d.N == 0) return;
  const bool dry = dry_run(out);
  if (d.K == 0) {  // an empty sum: out = beta * out
    if (dry) return;
    if (beta == 0.f) fill(out, 0.0);
    else axpby(0.f, out, beta, out);
    return;
  }

  const DType ta = a.dtype(), tb = b.dtype(), to = out.dtype();
  if (auto s = onednn_call(d, ta, tb, to, alpha, beta)) {
    onednn_gemm(*s, a.raw(), b.raw(), out.data<float>(), out.device());
  } else if (ta == DType::f32 && tb == DType::f32 && to == DType::f32) {
    if (!dry) matmul_same_type(d, a.data<float>(), b.data<float>(), out.data<float>(), alpha, beta);
  } else if (ta == DType::f64 && tb == DType::f64 && to == DType::f64) {
    if (!dry) matmul_same_type(d, a.data<double>(), b.data<double>(), out.data<double>(), alpha, beta);
  } else if (ta == DType::f32 && tb == DType::bf16 && to == DType::f32) {
    matmul_bf16_b(d, a.data<float>(), b.data<bf16>(), out.data<float>(), alpha, beta, out.device());
  } else if (ta == DType::bf16 && to == DType::f32 && (tb == DType::f32 || tb == DType::bf16)) {
    // bf16 activations are rare: widen all of a once, then as above.
    Tensor a32 = workspace(a.shape(), DType::f32, a.device());
    if (!dry) widen(a.data<bf16>(), a32.data<float>(), a.numel());
    matmul(a32, trans_a, b, trans_b, out, alpha, beta);
  } else {
    fail("matmul: dtypes {} @ {} -> {} are not supported on cpu (f32, f64, or bf16 with f32 output)",
         dtype_name(ta), dtype_name(tb), dtype_name(to));
  }
}

}  // namespace mp::cpu
