// DoRA (Liu et al. 2024, "Weight-decomposed low-rank adaptation"), as HF
// PEFT 0.21 implements it (LoraConfig(use_dora=True)). The LoRA-updated
// weight is split into a direction and a trained magnitude m per output
// channel:
//
//   W' = m / ||W0 + s B A|| * (W0 + s B A)        the norm per output channel (out)
//
// m starts at ||W0 + s B A|| (= ||W0|| for B = 0), so a fresh adapter
// changes nothing. The norm is a constant in backward (PEFT detaches it, as
// the paper's section 4.3 suggests): no gradient flows through it, and no
// (out, in) matrix is kept for backward.
//
// The layer's output, with n the norm and f = m / n:
//
//   no dropout:        h = f * (W0 x + s B A x) + b          W0 x read from the base output
//   dropout d (train): h = W0 x + b + (f - 1) * W0 d(x) + f * s B A d(x)
//
// The second is PEFT's formula with dropout: one mask, on the input of
// both the base's extra product W0 d(x) and the LoRA path.
#pragma once
#include <cstdint>

#include "nn/linear.h"
#include "peft/lora.h"

namespace mp::peft {

// ||W0 + s B A|| per output channel of `base` (out), in the adapter's dtype
// (f32), no gradient. W0 may be stored in f32, bf16 (widened) or NF4 (dequantized).
Tensor dora_weight_norm(const nn::Linear& base, const LoraWeights& w);

// The layer's output h above. x (..., in), base_out (..., out) = W0 x + b ->
// (..., out). p: the dropout probability (0 in eval), seed and offset its
// Philox stream (lora_down's).
Variable dora_forward(const Variable& x, const Variable& base_out, const nn::Linear& base, const LoraWeights& w,
                      float p, uint64_t seed, uint64_t offset);

// Merge: W0 -> m / n * (W0 + s B A) in base.weight (f32: LoraLinear checks), returning n (out)
// for unmerge, which takes it back out: W -> W * n / m - s B A.
Tensor dora_merge(nn::Linear& base, const LoraWeights& w);
void dora_unmerge(nn::Linear& base, const LoraWeights& w, const Tensor& norm);

}  // namespace mp::peft
