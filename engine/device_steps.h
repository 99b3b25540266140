// The steps of an accelerator's kernels that allocate workspace on the device
// around its device code (the CUDA backend's: a bf16 operand widened whole,
// an NF4 weight dequantized whole, attention backward's per-query sums),
// written once against the Backend interface, so that the meta backend that
// plans a CUDA run (engine/meta/cuda_plan.cpp) runs the same allocations in
// the same order, while its kernels compute nothing.
#pragma once
#include "engine/backend.h"
#include "engine/nf4.h"
#include "engine/tensor.h"

namespace mp {

// One operand bf16 and the other f32 into f32 (a frozen bf16 weight and f32
// activations): a GEMM that takes operands of one dtype needs the bf16 one widened.
bool mixed_bf16_f32(const Tensor& a, const Tensor& b, const Tensor& out);

// out = alpha * op(a) op(b) + beta * out through `backend`'s matmul, with the
// bf16 operand copied whole to f32 workspace on its device for the call.
void matmul_widened(Backend& backend, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                    const Tensor& out, float alpha, float beta);

// Backend::nf4_matmul as one f32 GEMM: the whole weight (O, K) dequantized
// into f32 workspace on x's device, multiplied, freed.
void nf4_matmul_dequantized(Backend& backend, const Tensor& x, const Nf4Tensor& w, bool transpose_w,
                            const Tensor& out);

// Attention backward's sum over d of gout * out per query: workspace of lse's
// shape (B, H, T) and dtype, on its device.
Tensor attention_backward_sums(const Tensor& lse);

}  // namespace mp
