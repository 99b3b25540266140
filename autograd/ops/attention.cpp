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
// the products run in bf16 (AttentionParams::compute).
#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace mp::ag {

Variable attention(const Variable& q, const Variable& k, const Variable& v, const AttentionParams& p) {
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4)
    fail("attention: q {}, k {}, v {} must be (B, H, T, D), (B, H, S, D), (B, H, S, D)", shape_str(q.shape()),
         shape_str(k.shape()), shape_str(v.shape()));
  // The kernels want contiguous tensors; keep the contiguous copies for
  // backward instead of making them twice.
  Tensor qc = q.value().contiguous();  // (B, H, T, D)
  Tensor kc = k.value().contiguous();  // (B, H, S, D)
  Tensor vc = v.value().contiguous();  // (B, H, S, D)
  AttentionParams params = p;  // dropout and its seed too: backward redraws the same mask
  params.compute = autocast_dtype();  // backward keeps the choice made here
  ops::AttentionOut fwd = ops::attention(qc, kc, vc, params);
  bool need_q = needs_grad(q), need_k = needs_grad(k), need_v = needs_grad(v);
  // The key mask is captured by value (a Tensor handle), not through the
  // caller's pointer, which may be gone when backward runs.
  Tensor key_mask = p.key_mask ? *p.key_mask : Tensor();
  Tensor segment_ids = p.segment_ids ? *p.segment_ids : Tensor();
  params.key_mask = nullptr;
  params.segment_ids = nullptr;
  return make_result(fwd.out, "attention", {q, k, v}, [=, out = fwd.out, lse = fwd.lse](const Tensor& g,
                                                                                       std::span<Tensor> gin) {
    AttentionParams bwd = params;
    if (key_mask.defined()) bwd.key_mask = &key_mask;
    if (segment_ids.defined()) bwd.segment_ids = &segment_ids;
    Device dev = g.device();
    // The kernel overwrites these (backend.h: no "accumulate").
    Tensor gq = need_q ? Tensor::empty(qc.shape(), g.dtype(), dev) : Tensor();
    Tensor gk = need_k ? Tensor::empty(kc.shape(), g.dtype(), dev) : Tensor();
    Tensor gv = need_v ? Tensor::empty(vc.shape(), g.dtype(), dev) : Tensor();
    ops::attention_backward(qc, kc, vc, out, lse, g.contiguous(), bwd, gq, gk, gv);
    gin[0] = gq;
    gin[1] = gk;
    gin[2] = gv;
  });
}

}  // namespace mp::ag
