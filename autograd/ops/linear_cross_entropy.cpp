// The LM head and its loss in one op, so that neither the (N, V) logits nor
// their gradient ever exist whole:
//
//   loss = cross_entropy(hidden W^T, targets)      hidden (N, E), W (V, E), targets (N) i32
//
// The rows go through in chunks of R. For a chunk:
//
//   logits (R, V)  = hidden_r W^T
//   losses_r (R)   = lse(logits_n) - logits_n[target_n]           (backend cross_entropy)
//   glogits (R, V) = (1/count) (softmax(logits) - onehot(target))  (backend cross_entropy_backward)
//   dhidden_r (R, E) = glogits W
//
// and the chunk's logits are dropped before the next. dhidden is computed in
// the forward, as llm.c's fused classifier does: the logits are at hand
// there, and computing them again in backward would cost one more GEMM of
// the LM head's size. Backward only multiplies dhidden by the incoming
// gradient g (a scalar: the loss is the last op). The weight's gradient
//
//   dW (V, E) = sum over chunks of glogits^T hidden_r
//
// is made in backward, only when W needs one (full fine-tuning: the tied
// embedding table), recomputing each chunk's logits: keeping a (V, E) buffer
// from forward to backward would cost more memory than the logits it replaces
// at short sequences.
//
// Under an AutocastScope(bf16) the GEMMs read bf16 copies of their operands,
// exactly as ag::linear's do (autograd/autocast.h), so the maths is that of
// cross_entropy(linear(hidden, W)).
#include <algorithm>

#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "autograd/ops/targets.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace mp::ag {

namespace {

// The logits of a default chunk: about this many bytes (R = this / (4 V)
// rows, 250 at GPT-2's V = 50257). Measured on GPT-2's head (N = 1024,
// E = 768) in CPU seconds: 83 rows and fewer are slower than the unfused
// head, 128 to 512 as fast (docs/benchmarks.md); fewer rows hold fewer bytes.
constexpr int64_t kChunkBytes = int64_t(48) << 20;

int64_t rows_per_chunk(int64_t requested, int64_t N, int64_t V) {
  int64_t R = requested > 0 ? requested : kChunkBytes / (4 * V);
  return std::clamp<int64_t>(R, 1, std::max<int64_t>(N, 1));
}

// glogits (R, V) = gscale (softmax(logits) - onehot(targets)), 0 in ignored rows.
Tensor grad_logits(const Tensor& logits, const Tensor& targets, const Tensor& lse, int ignore_index,
                   const Tensor& gscale) {
  Tensor g = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  ops::cross_entropy_backward(logits, targets, lse, ignore_index, gscale, g);
  return g;
}

}  // namespace

Variable linear_cross_entropy(const Variable& hidden, const Variable& weight, const Tensor& targets, int ignore_index,
                              int64_t chunk_rows) {
  if (hidden.dim() != 2 || weight.dim() != 2 || hidden.size(1) != weight.size(1))
    fail("linear_cross_entropy: hidden {} must be (N, E) and weight {} (V, E)", shape_str(hidden.shape()),
         shape_str(weight.shape()));
  const int64_t N = hidden.size(0), V = weight.size(0);
  detail::check_targets("linear_cross_entropy", targets, N);
  Tensor t = targets.contiguous();  // (N)
  Tensor inv_count = ops::inverse_target_count(t, ignore_index);  // (1); every row ignored: loss and gradients 0
  const bool need_h = needs_grad(hidden), need_w = needs_grad(weight);
  const DType compute = autocast_dtype();  // backward keeps the choice made here
  CastCache* cache = autocast_cache();     // a frozen weight's kept bf16 copy

  Tensor h = gemm_operand(hidden.value().contiguous(), compute);  // (N, E)
  Tensor w = gemm_operand(weight.value(), compute, cache);        // (V, E)
  const int64_t R = rows_per_chunk(chunk_rows, N, V);
  std::vector<Tensor> losses, lses, dh;  // per chunk: (R), (R), (R, E)
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    TagScope scratch(Tag::workspace);  // a chunk's tensors are scratch; what backward keeps is made below
    const int64_t rows = std::min(R, N - r0);
    Tensor t_r = t.narrow(0, r0, rows);                                    // (rows)
    Tensor logits = ops::matmul(h.narrow(0, r0, rows), w, false, true);    // (rows, V)
    ops::CrossEntropyRows rows_ce = ops::cross_entropy_rows(logits, t_r, ignore_index);  // (rows), (rows)
    losses.push_back(rows_ce.losses);
    if (need_w) lses.push_back(rows_ce.lse);
    if (need_h) {
      Tensor gl = gemm_operand(grad_logits(logits, t_r, rows_ce.lse, ignore_index, inv_count), compute);  // (rows, V)
      dh.push_back(ops::matmul(gl, w));                                                       // (rows, E)
    }
  }
  Tensor loss = detail::mean_loss(ops::cat(losses, 0), inv_count);  // (1)
  Tensor keep_dh = need_h ? ops::cat(dh, 0) : Tensor();  // (N, E) for g = 1
  Tensor keep_h = need_w ? h : Tensor();                 // (N, E): dW recomputes the logits from it
  Tensor keep_lse = need_w ? ops::cat(lses, 0) : Tensor();  // (N): and their softmax from this
  Tensor keep_w = need_w ? weight.value() : Tensor();    // (V, E): alive anyway (not its bf16 copy, as ag::linear)
  return make_result(loss, "linear_cross_entropy", {hidden, weight}, [=](const Tensor& g, std::span<Tensor> gin) {
    if (need_h) gin[0] = ops::mul(keep_dh, g);  // g (1) is the loss's gradient
    if (!need_w) return;
    Tensor gscale = detail::gradient_scale(g, inv_count);  // (1)
    Tensor wc = gemm_operand(keep_w, compute, cache);  // (V, E)
    Tensor dw;                                  // (V, E), summed over the chunks
    for (int64_t r0 = 0; r0 < N; r0 += R) {
      const int64_t rows = std::min(R, N - r0);
      Tensor h_r = keep_h.narrow(0, r0, rows);                                     // (rows, E)
      Tensor logits = ops::matmul(h_r, wc, false, true);                           // (rows, V)
      Tensor gl = gemm_operand(
          grad_logits(logits, t.narrow(0, r0, rows), keep_lse.narrow(0, r0, rows), ignore_index, gscale), compute);
      if (!dw.defined()) dw = ops::matmul(gl, h_r, true, false);  // (V, E) = glogits^T h_r
      else ops::matmul_into(gl, true, h_r, false, dw, 1.f, 1.f);
    }
    gin[1] = dw;
  });
}

}  // namespace mp::ag
