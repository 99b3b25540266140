#include "engine/device_steps.h"

namespace mp {

bool mixed_bf16_f32(const Tensor& a, const Tensor& b, const Tensor& out) {
  const DType ta = a.dtype(), tb = b.dtype();
  return out.dtype() == DType::f32 &&
         ((ta == DType::f32 && tb == DType::bf16) || (ta == DType::bf16 && tb == DType::f32));
}

void matmul_widened(Backend& backend, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                    const Tensor& out, float alpha, float beta) {
  auto widen = [&](const Tensor& t) {
    if (t.dtype() != DType::bf16) return t;
    Tensor w = Tensor::empty(t.shape(), DType::f32, t.device(), Tag::workspace);  // t's shape, for this GEMM only
    backend.copy(t, w);
    return w;
  };
  const Tensor wa = widen(a), wb = widen(b);
  backend.matmul(wa, trans_a, wb, trans_b, out, alpha, beta);
}

void nf4_matmul_dequantized(Backend& backend, const Tensor& x, const Nf4Tensor& w, bool transpose_w,
                            const Tensor& out) {
  Tensor wd = Tensor::empty(w.shape, DType::f32, x.device(), Tag::workspace);  // (O, K), for this GEMM only
  backend.nf4_dequantize(w, wd);
  backend.matmul(x.view({1, x.size(0), x.size(1)}), false, wd.view({1, w.shape[0], w.shape[1]}), transpose_w,
                 out.view({1, out.size(0), out.size(1)}), 1.f, 0.f);
}

Tensor attention_backward_sums(const Tensor& lse) {
  return Tensor::empty(lse.shape(), lse.dtype(), lse.device(), Tag::workspace);  // (B, H, T)
}

}  // namespace mp
