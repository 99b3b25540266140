// Fused scaled-dot-product attention, per (batch, head):
//   P = softmax(scale * Q K^T + mask)     out = dropout(P) V
// (the dropout mask is a function of the seed in AttentionParams, redrawn in
// backward: it costs no memory)
// Backward (with lse, each query's log-sum-exp, P is recomputed, never stored):
//   dV = P^T dO
//   dP = dO V^T,  dS = P * (dP - rowsum(dO * out))
//   dQ = scale * dS K,   dK = scale * dS^T Q
// Every gradient needs P, i.e. q, k and lse; dQ and dK also need v and out.
// The node keeps all five (the backend's backward takes them all; in a
// transformer q, k and v come from one projection, so they are trainable or
// frozen together). Gradients nobody needs are not computed. Under autocast
// the products run in bf16 (AttentionParams::compute). GPT-2 hands q, k and v
// over stacked in one tensor (the packed overload), so their gradients reach
// its fused projection in one pass, not as three zero-padded slices summed.
#include <array>

#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace mp::ag {

namespace {

// The node over contiguous q (B, H, T, D), k and v (B, H, S, D). Its inputs
// are q, k and v, or (packed) one qkv (3, B, H, T, D) whose slices they are.
Variable attention_node(std::vector<Variable> inputs, Tensor qc, Tensor kc, Tensor vc, const AttentionParams& p) {
  const bool packed = inputs.size() == 1;
  AttentionParams params = p;  // dropout and its seed too: backward redraws the same mask
  params.compute = autocast_dtype();  // backward keeps the choice made here
  ops::AttentionOut fwd = ops::attention(qc, kc, vc, params);
  std::array<bool, 3> need{};
  for (size_t i = 0; i < 3; ++i) need[i] = needs_grad(inputs[packed ? 0 : i]);
  // The key mask is captured by value (a Tensor handle), not through the
  // caller's pointer, which may be gone when backward runs.
  Tensor key_mask = p.key_mask ? *p.key_mask : Tensor();
  Tensor segment_ids = p.segment_ids ? *p.segment_ids : Tensor();
  params.key_mask = nullptr;
  params.segment_ids = nullptr;
  return make_result(fwd.out, "attention", std::move(inputs), [=, out = fwd.out, lse = fwd.lse](
                                                                  const Tensor& g, std::span<Tensor> gin) {
    AttentionParams bwd = params;
    if (key_mask.defined()) bwd.key_mask = &key_mask;
    if (segment_ids.defined()) bwd.segment_ids = &segment_ids;
    Device dev = g.device();
    // The kernel overwrites these (backend.h: no "accumulate").
    std::array<Tensor, 3> grads;
    if (packed) {
      gin[0] = Tensor::empty({3, qc.size(0), qc.size(1), qc.size(2), qc.size(3)}, g.dtype(), dev);
      for (int64_t i = 0; i < 3; ++i) grads[size_t(i)] = gin[0].select(0, i);  // (B, H, T, D) views
    } else {
      const std::array<const Tensor*, 3> like{&qc, &kc, &vc};
      for (size_t i = 0; i < 3; ++i)
        if (need[i]) gin[i] = grads[i] = Tensor::empty(like[i]->shape(), g.dtype(), dev);
    }
    ops::attention_backward(qc, kc, vc, out, lse, g.contiguous(), bwd, grads[0], grads[1], grads[2]);
  });
}

}  // namespace

Variable attention(const Variable& q, const Variable& k, const Variable& v, const AttentionParams& p) {
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4)
    fail("attention: q {}, k {}, v {} must be (B, H, T, D), (B, H, S, D), (B, H, S, D)", shape_str(q.shape()),
         shape_str(k.shape()), shape_str(v.shape()));
  // The kernels want contiguous tensors; keep the contiguous copies for
  // backward instead of making them twice.
  return attention_node({q, k, v}, q.value().contiguous(), k.value().contiguous(), v.value().contiguous(), p);
}

Variable attention(const Variable& qkv, const AttentionParams& p) {
  if (qkv.dim() != 5 || qkv.size(0) != 3)
    fail("attention: packed qkv {} must be (3, B, H, T, D)", shape_str(qkv.shape()));
  Tensor c = qkv.value().contiguous();  // (3, B, H, T, D): one copy; q, k and v are its slices
  return attention_node({qkv}, c.select(0, 0), c.select(0, 1), c.select(0, 2), p);
}

}  // namespace mp::ag
