// Differentiable ops: free functions on Variables. Each lives in
// autograd/ops/<family>.cpp with its forward and its backward side by side,
// and saves only what a required gradient needs (see variable.h).
#pragma once
#include <cstdint>
#include <vector>

#include "autograd/variable.h"
#include "engine/backend.h"

namespace mp::ag {

// Elementwise, NumPy broadcasting (gradients are summed back to each input's shape).
Variable add(const Variable& a, const Variable& b);
Variable sub(const Variable& a, const Variable& b);
Variable mul(const Variable& a, const Variable& b);
Variable div(const Variable& a, const Variable& b);
Variable scale(const Variable& a, float s);
Variable neg(const Variable& a);
Variable exp(const Variable& a);
Variable log(const Variable& a);
Variable sqrt(const Variable& a);
Variable tanh(const Variable& a);
Variable square(const Variable& a);
Variable relu(const Variable& a);
Variable gelu(const Variable& a);  // tanh approximation (GPT-2)

// Reductions.
Variable sum(const Variable& a, int axis, bool keepdim = false);
Variable mean(const Variable& a, int axis, bool keepdim = false);
Variable sum_all(const Variable& a);   // shape (1)
Variable mean_all(const Variable& a);  // shape (1)

// Shapes (views where possible; gradients flow back through the view).
Variable reshape(const Variable& a, const Shape& shape);
Variable transpose(const Variable& a, int d0, int d1);
Variable permute(const Variable& a, const std::vector<int>& order);
Variable narrow(const Variable& a, int axis, int64_t start, int64_t length);
Variable expand(const Variable& a, const Shape& shape);
Variable cat(const std::vector<Variable>& parts, int axis);

// a (..., M, K) @ b (..., K, N); ta / tb read the stored operand transposed.
Variable matmul(const Variable& a, const Variable& b, bool ta = false, bool tb = false);
// x (..., in) -> (..., out). w is (out, in) as torch.nn.Linear, or (in, out)
// as GPT-2's Conv1D when w_in_out. b (out) may be undefined.
Variable linear(const Variable& x, const Variable& w, const Variable& b, bool w_in_out = false);
// x (..., in) -> x W^T + b (..., out) with W (out, in) a frozen NF4 matrix:
// gradients for x and b only (autograd/ops/nf4_linear.cpp).
Variable linear_nf4(const Variable& x, const std::shared_ptr<const Nf4Tensor>& w, const Variable& b);

Variable softmax(const Variable& x);      // last axis
Variable log_softmax(const Variable& x);  // last axis
Variable layer_norm(const Variable& x, const Variable& w, const Variable& b, float eps);
// ids (...) i32 (no gradient) -> (..., C) rows of table (V, C). Row
// padding_idx gets no gradient from this lookup (-1: every row does).
Variable embedding(const Tensor& ids, const Variable& table, int padding_idx = -1);
// Mean over rows whose target != ignore_index of -log softmax(logits)[target].
// logits (N, V), targets (N) i32. The (N, V) probabilities are never saved.
Variable cross_entropy(const Variable& logits, const Tensor& targets, int ignore_index = -100);
// cross_entropy(linear(hidden, weight), targets) without ever holding the
// (N, V) logits or their gradient: rows go through in chunks of chunk_rows
// (0: a size measured to be fast). hidden (N, E), weight (V, E) (torch
// layout), targets (N) i32. Follows autocast as ag::linear does.
Variable linear_cross_entropy(const Variable& hidden, const Variable& weight, const Tensor& targets,
                              int ignore_index = -100, int64_t chunk_rows = 0);
// Identity when p == 0. The mask comes from Philox(seed), so backward
// regenerates it instead of saving it.
Variable dropout(const Variable& x, float p, uint64_t seed, uint64_t offset = 0);
// q (B, H, T, D), k and v (B, H, S, D) -> (B, H, T, D). See engine/backend.h.
Variable attention(const Variable& q, const Variable& k, const Variable& v, const AttentionParams& p);
// The same with q, k and v stacked in one qkv (3, B, H, T, D), as one fused
// projection makes them (self-attention without a prefix or cache): the
// backward writes dq, dk and dv into one gradient of qkv's shape.
Variable attention(const Variable& qkv, const AttentionParams& p);

}  // namespace mp::ag
