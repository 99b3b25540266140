// The CPU kernels, one family per file. CpuBackend (cpu_backend.cpp) forwards
// each Backend virtual to one of these; see engine/backend.h for what each
// computes and which tensors may be strided.
#pragma once
#include <string>
#include <cstdint>

#include "engine/backend.h"
#include "engine/cpu/onednn_gemm.h"
#include "engine/nf4.h"
#include "engine/tensor.h"

namespace mp::cpu {

// Threads OpenMP will use in a parallel region (1 without OpenMP).
int max_threads();
// A contiguous scratch tensor counted under Tag::workspace, from the pool of
// `device`: the one the kernel's operands are on (cpu, sim, or meta in a dry run).
Tensor workspace(const Shape& shape, DType dt, Device device);

// Dry runs. matmul, attention, attention_backward and nf4_matmul also take meta
// tensors (engine/meta/: shapes, no bytes), as the meta backend's kernels:
// then they allocate their workspace on meta, block by block in the order
// and sizes they do on the CPU (each GEMM's scratchpad included), and compute
// nothing. So the allocator the planner runs on meta (engine/block_pool.h)
// sees the same allocations and frees as the CPU's, and caches the same.
inline bool dry_run(const Tensor& t) { return t.device() == kMeta; }

// elementwise.cpp
void copy(const Tensor& src, const Tensor& dst);
void fill(const Tensor& dst, double value);
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
void unary(UnaryOp op, const Tensor& a, const Tensor& out);
void unary_backward(UnaryOp op, const Tensor& x_or_y, const Tensor& gy, const Tensor& gx);
void axpby(float alpha, const Tensor& a, float beta, const Tensor& out);
void arange(const Tensor& dst, int64_t start);
void mask_positions(const Tensor& mask, int64_t offset, const Tensor& out);
void clip_by_norm(const Tensor& grad, const Tensor& norm, double max_norm, double eps);

// reduce.cpp
void reduce(ReduceOp op, const Tensor& a, int axis, const Tensor& out);
void add_sum_of_squares(const Tensor& x, const Tensor& sum);

// random.cpp
void random(const Tensor& dst, Distribution dist, double a, double b, uint64_t seed);
void dropout(const Tensor& x, float p, uint64_t seed, uint64_t offset, const Tensor& out);

// matmul.cpp
void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out, float alpha,
            float beta);
// What runs a GEMM whose operands are both dt (f32 or bf16) at a GPT-2
// layer's shape: "onednn <kernel>", or "openblas <core>" (bf16: "widened to
// f32, openblas <core>").
std::string gemm_implementation(DType dt);
// One GEMM on raw buffers (onednn_gemm.h's shapes) for the other kernels:
// oneDNN where it has a real kernel for the call, else OpenBLAS sgemm (f32
// only: bf16 operands only where bf16_gemm_native()). Its scratchpad comes
// from `device`'s pool.
void gemm_2d(const GemmShape& s, const void* A, const void* B, float* C, Device device);
// The f32 workspace elements gemm_2d holds for s (oneDNN's scratchpad).
int64_t gemm_2d_workspace_elements(const GemmShape& s);
// Whether this CPU multiplies bf16 natively (AVX512-BF16, AMX) here.
bool bf16_gemm_native();
// How many of the N columns (rows, if stored transposed) of a (K, N) weight
// are widened to f32 at a time (bf16 here, NF4 in nf4.cpp).
int64_t weight_block_width(int64_t K, int64_t N);

// nf4.cpp (engine/nf4.h)
void nf4_quantize(const Tensor& w, Nf4Tensor& q);
void nf4_dequantize(const Nf4Tensor& q, const Tensor& out);
// Also a dry run on meta tensors (see above).
void nf4_matmul(const Tensor& x, const Nf4Tensor& w, bool transpose_w, const Tensor& out);

// softmax.cpp
void softmax(const Tensor& x, const Tensor& y, bool log);
void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log);

// layer_norm.cpp
void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& y, const Tensor& mean,
                const Tensor& rstd);
void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                         const Tensor& gx, const Tensor& gw, const Tensor& gb);

// embedding.cpp
void embedding(const Tensor& ids, const Tensor& table, const Tensor& out);
void embedding_backward(const Tensor& ids, const Tensor& gout, const Tensor& gtable, int padding_idx);

// cross_entropy.cpp
void cross_entropy(const Tensor& logits, const Tensor& targets, int ignore_index, const Tensor& losses,
                   const Tensor& lse);
void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, int ignore_index,
                            const Tensor& gscale, const Tensor& glogits);
void inverse_target_count(const Tensor& targets, int ignore_index, const Tensor& out);

// attention.cpp; both also dry runs on meta tensors (see above).
void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p, const Tensor& out,
               const Tensor& lse);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& gout, const AttentionParams& p, const Tensor& gq, const Tensor& gk,
                        const Tensor& gv);

// adamw.cpp
void adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr, float beta1,
           float beta2, float eps, float weight_decay, int64_t step);

}  // namespace mp::cpu
