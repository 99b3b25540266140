// Tensor ops without gradients: each checks shapes (mp::Error naming them),
// allocates its output under the current TagScope's tag, and calls the
// backend of its inputs' device. autograd/ builds differentiable ops on these.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/backend.h"
#include "engine/tensor.h"

namespace mp::ops {

// Elementwise with NumPy broadcasting.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& a, float s);  // a * s
Tensor unary(UnaryOp op, const Tensor& a);
Tensor unary_backward(UnaryOp op, const Tensor& x_or_y, const Tensor& gy);
void axpby(float alpha, const Tensor& a, float beta, const Tensor& out);  // out = alpha*a + beta*out
void fill(const Tensor& t, double value);
void random(const Tensor& t, Distribution dist, double a, double b, uint64_t seed);
// (..., T) i32 on d: every row start .. start + T - 1 (position ids made where they are used).
Tensor arange(const Shape& shape, int64_t start, Device d);
// OPT's positions (B, T) i32 of the last T keys of an attention mask (B, S) i32, on its device
// (Backend::mask_positions): the running count of kept keys, less one, plus offset; offset - 1 at padding.
Tensor mask_positions(const Tensor& mask, int64_t T, int64_t offset);
// grad *= max_norm / (norm + eps) where that is < 1 (or NaN), norm (1) f64 read on grad's device.
void clip_by_norm(const Tensor& grad, const Tensor& norm, double max_norm, double eps);

// Reductions over one axis (negative counts from the end) or all.
Tensor sum(const Tensor& a, int axis, bool keepdim = false);
Tensor mean(const Tensor& a, int axis, bool keepdim = false);
Tensor max(const Tensor& a, int axis, bool keepdim = false);
Tensor sum_all(const Tensor& a);  // shape (1)
// sum (1) f64 += the sum of x's squares in f64 (no widened copy of x).
void add_sum_of_squares(const Tensor& x, const Tensor& sum);
// Sum a broadcast result back to `shape` (the gradient of broadcasting).
Tensor sum_to(const Tensor& a, const Shape& shape);

// Matrix products. a (..., M, K) @ b (..., K, N) -> (..., M, N); a 2-D b is
// shared by every batch entry; ta/tb read a or b transposed without a copy.
Tensor matmul(const Tensor& a, const Tensor& b, bool ta = false, bool tb = false);
// out = alpha * op(a) op(b) + beta * out, with out allocated by the caller.
void matmul_into(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& out, float alpha, float beta);
// The floating-point operations (2 M N K per product) every matmul so far has
// done, on any device: what `bench` divides by the step time and the GEMM peak.
uint64_t matmul_flops();
// What runs a matmul with both operands of dtype dt on device d (Backend::gemm_implementation).
std::string gemm_implementation(DType dt, Device d);

Tensor softmax(const Tensor& x);      // over the last axis
Tensor log_softmax(const Tensor& x);  // over the last axis
Tensor softmax_backward(const Tensor& y, const Tensor& gy, bool log);

struct LayerNormOut {
  Tensor y, mean, rstd;
};
// Over the last axis of x (..., C).
LayerNormOut layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps);
// Writes gx (N, C) and accumulates gw, gb (C) (each may be undefined) from gy (N, C) and the forward's saved tensors.
void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                         const Tensor& gx, const Tensor& gw, const Tensor& gb);

Tensor embedding(const Tensor& ids, const Tensor& table);  // ids (...) i32 -> (..., C)
// gtable (V, C) += the rows of gout (N, C) at ids (N), except padding_idx's.
void embedding_backward(const Tensor& ids, const Tensor& gout, const Tensor& gtable, int padding_idx);
// Per-row losses (N) of logits (N, V) against targets (N), and each row's
// log-sum-exp (N) for the backward; ignored rows are 0 in both.
struct CrossEntropyRows {
  Tensor losses, lse;
};
CrossEntropyRows cross_entropy_rows(const Tensor& logits, const Tensor& targets, int ignore_index);
// glogits (N, V) = gscale * (exp(logits - lse) - onehot(targets)), 0 on ignored rows;
// lse is cross_entropy_rows' of the same logits, gscale (1) f32 on their device.
void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, int ignore_index,
                            const Tensor& gscale, const Tensor& glogits);
// (1) f32: 1 / the number of targets (N) i32 that are not ignore_index (0 if none),
// counted on the targets' device: the scale of cross-entropy's mean.
Tensor inverse_target_count(const Tensor& targets, int ignore_index);
Tensor dropout(const Tensor& x, float p, uint64_t seed, uint64_t offset = 0);

struct AttentionOut {
  Tensor out, lse;
};
AttentionOut attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p);
// Writes gq, gk, gv (each may be undefined) from the forward's out, lse and the incoming gout.
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& gout, const AttentionParams& p, const Tensor& gq, const Tensor& gk,
                        const Tensor& gv);

// One fused AdamW update of param in place, with its moments m, v (Backend::adamw).
void adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr, float beta1,
           float beta2, float eps, float weight_decay, int64_t step);

// Concatenate along one axis (prompt tuning prepends virtual tokens this way).
Tensor cat(const std::vector<Tensor>& parts, int axis);

// Largest |a - b| (for tests and checks); a and b same shape.
double max_abs_diff(const Tensor& a, const Tensor& b);

}  // namespace mp::ops
