// The CUDA kernels' launchers, on raw device pointers: cuda_backend.cpp checks
// shapes and dtypes on Tensors and calls these; elementwise.cu and nn.cu
// define them. Everything runs on the default stream, in order, so memory
// freed to the caching allocator can be reused by the next launch at once.
//
// Internal to cuda/: plain C++ (no CUDA header), so that the backend (.cpp,
// built by g++) and the kernels (.cu, built by nvcc) share it.
#pragma once
#include <cstdint>

#include "engine/backend.h"
#include "engine/dtype.h"

namespace mp::cuda {

constexpr int kMaxDims = 8;

// N operands walked together over one shape, row-major. The host simplifies
// the shape first (size-1 axes dropped, axes that are contiguous in every
// operand merged), so a contiguous tensor is a single axis.
template <int N>
struct Strided {
  int ndim = 0;
  int64_t numel = 0;
  int64_t shape[kMaxDims];
  int64_t strides[N][kMaxDims];  // per operand, in elements
};

// A device pointer with its element type.
struct Ptr {
  void* p = nullptr;
  DType dt = DType::f32;
};

// ---- elementwise.cu
// L's operand 0 is src, 1 is dst.
void launch_copy(const Strided<2>& L, Ptr src, Ptr dst);
void launch_fill(const Strided<1>& L, Ptr dst, double value);
// Element i (row-major over dst's shape) gets the Philox value of index i.
void launch_random(const Strided<1>& L, Ptr dst, Distribution dist, double a, double b, uint64_t seed);
// Operands (a, b, out); computed in double when `dbl`, else float.
void launch_binary(BinaryOp op, const Strided<3>& L, Ptr a, Ptr b, Ptr out, bool dbl);
void launch_unary(UnaryOp op, const Strided<2>& L, Ptr a, Ptr out, bool dbl);
void launch_unary_backward(UnaryOp op, const Strided<3>& L, Ptr v, Ptr gy, Ptr gx, bool dbl);
// Operands (a, out); beta == 0 does not read out.
void launch_axpby(const Strided<2>& L, float alpha, Ptr a, float beta, Ptr out, bool dbl);
// dst (rows, T) i32: every row start .. start + T - 1.
void launch_arange(int64_t rows, int64_t T, int32_t* dst, int64_t start);
void launch_mask_positions(int64_t B, int64_t S, int64_t T, const int32_t* mask, int32_t* out, int64_t offset);
// grad (n, contiguous) *= coef = max_norm / (*norm + eps) where coef < 1 or NaN; norm on the device.
void launch_clip_by_norm(int64_t n, Ptr grad, const double* norm, double max_norm, double eps);
// L walks out's shape (operand 0: a with the reduced axis removed, 1: out);
// each output reduces `len` elements of a `axis_stride` apart.
void launch_reduce(ReduceOp op, const Strided<2>& L, int64_t len, int64_t axis_stride, Ptr a, Ptr out, bool dbl);
void launch_dropout(int64_t n, Ptr x, Ptr out, float p, uint64_t seed, uint64_t offset);
// Ids out of [0, V) set *err to 1 (the host reads it and throws).
void launch_embedding(int64_t N, int64_t V, int64_t C, const int32_t* ids, Ptr table, Ptr out, int* err);
void launch_embedding_backward(int64_t N, int64_t V, int64_t C, const int32_t* ids, Ptr gout, Ptr gtable,
                               int padding_idx);
void launch_adamw(int64_t n, float* param, const float* grad, float* m, float* v, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t step);

// ---- nn.cu: row kernels, all contiguous, (N, C) = (rows, last axis); they
// compute in double when the input (x, y, logits) is f64, else in float.
void launch_softmax(int64_t N, int64_t C, Ptr x, Ptr y, bool log);
void launch_softmax_backward(int64_t N, int64_t C, Ptr y, Ptr gy, Ptr gx, bool log);
// w, b may have p == nullptr (1 and 0).
void launch_layer_norm(int64_t N, int64_t C, Ptr x, Ptr w, Ptr b, float eps, Ptr y, Ptr mean, Ptr rstd);
// gx, gw, gb may have p == nullptr (not wanted); gw, gb accumulate and must be f32 or f64.
void launch_layer_norm_backward(int64_t N, int64_t C, Ptr gy, Ptr x, Ptr w, Ptr mean, Ptr rstd, Ptr gx, Ptr gw,
                                Ptr gb);
// Targets outside [0, V) other than ignore_index set *err to 1.
// lse (N) is each row's log-sum-exp, written by the forward and read by the backward.
void launch_cross_entropy(int64_t N, int64_t V, Ptr logits, const int32_t* targets, int ignore_index, Ptr losses,
                          Ptr lse, int* err);
// gscale: (1) on the device, read by the kernel.
void launch_cross_entropy_backward(int64_t N, int64_t V, Ptr logits, const int32_t* targets, Ptr lse,
                                   int ignore_index, const float* gscale, Ptr glogits, int* err);
// *out = 1 / (targets (N) that are not ignore_index), 0 if none.
void launch_inverse_target_count(int64_t N, const int32_t* targets, int ignore_index, float* out);
// sum[0] += the sum of x's N squares (x contiguous), in double.
void launch_add_sum_of_squares(int64_t N, Ptr x, double* sum);

// Attention sizes: q (B, H, T, D), k and v (B, H, S, D), S >= T, D <= kMaxHeadDim.
constexpr int kMaxHeadDim = 128;
struct AttnDims {
  int64_t B, H, T, S, D;
  float scale;
  bool causal;
  const int32_t* key_mask;  // (B, S) or nullptr
  float dropout;            // on the probabilities; 0: none (engine/backend.h, AttentionParams)
  uint64_t seed;
  uint64_t dropout_offset;  // of element (0, 0, 0, 0) in the mask's stream
};
// lse (B, H, T) is in the compute type: f64 for f64 inputs, else f32 (the
// kernels compute in double or float accordingly).
void launch_attention(const AttnDims& d, Ptr q, Ptr k, Ptr v, Ptr out, Ptr lse);
// gq, gk, gv may have p == nullptr; delta is a (B, H, T) scratch of lse's dtype.
void launch_attention_backward(const AttnDims& d, Ptr q, Ptr k, Ptr v, Ptr out, Ptr lse, Ptr gout, Ptr gq, Ptr gk,
                               Ptr gv, Ptr delta);

// ---- nf4.cu: values [begin, begin + count) of an NF4 matrix (engine/nf4.h)
// into out (count) f32. The code tables travel by value (kernel parameters).
struct Nf4Tables {
  float nf4[16];
  float dynamic[256];
};
void launch_nf4_dequantize(int64_t begin, int64_t count, const uint8_t* packed, const uint8_t* absmax,
                           const float* nested, float offset, const Nf4Tables& tables, float* out);

// The last launch's error (launch configuration, or an earlier kernel's
// fault) as a message, or nullptr if none; clears it.
const char* last_error();
// Copies the device int at err to the host, resets it to 0, returns it; -1
// when the copy or the reset failed (last_error() says why).
int take_flag(int* err);

}  // namespace mp::cuda
