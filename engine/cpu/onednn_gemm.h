// GEMMs through oneDNN's matmul primitive, which picks its kernel from the
// CPU's feature bits at run time (AMX, AVX512-BF16, AVX-512, AVX2), unlike a
// BLAS that knows CPUs by model number and falls back to a generic kernel on
// one it does not know.
//
//   C (batch, M, N) = alpha * op(A) op(B) + beta * C
//   A (batch_a, M, K), stored (batch_a, K, M) when ta; B likewise with tb.
//   lda, ldb, ldc: the row strides as stored (a batch > 1 is dense).
//
// A and B are both f32 or both bf16; C is f32. Transposes are strides, never
// copies; a batch of 1 broadcasts. Primitives are cached per shape, dtype,
// layout, alpha and beta; oneDNN's scratchpad is user-managed, allocated as
// Tag::workspace, so the memory planner counts it (gemm_workspace_bytes).
#pragma once
#include <cstdint>
#include <string>

#include "engine/device.h"
#include "engine/dtype.h"

namespace mp::cpu {

struct GemmShape {
  DType dtype;  // of A and B: f32 or bf16
  bool ta, tb;
  int64_t batch, M, N, K;
  int64_t batch_a, batch_b;  // 1 or batch
  float alpha, beta;
  int64_t lda, ldb, ldc;
};

// True when oneDNN has a kernel for this call that is not its generic
// reference code (bf16 on a CPU without bf16 instructions, for one).
bool onednn_gemm_available(const GemmShape& s);

// The scratchpad oneDNN needs for this call (0 when unavailable).
int64_t onednn_gemm_scratchpad_bytes(const GemmShape& s);

// Runs the call; onednn_gemm_available(s) must be true. The scratchpad comes
// from `device`'s pool (the host's: cpu, or the sim device's).
void onednn_gemm(const GemmShape& s, const void* A, const void* B, float* C, Device device);

// The kernel oneDNN chose, e.g. "brg:avx512_core_bf16", or "" when unavailable.
std::string onednn_gemm_impl(const GemmShape& s);

}  // namespace mp::cpu
