// Fused AdamW step, torch.optim.AdamW semantics:
//   p -= lr * wd * p                       (decoupled weight decay)
//   m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2
//   mhat = m / (1 - b1^t),   vhat = v / (1 - b2^t)
//   p -= lr * mhat / (sqrt(vhat) + eps)
// One pass over param, grad, m, v: 16 bytes read and 12 written per parameter.
#include <cmath>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/kernels.h"

namespace mp::cpu {

void adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr, float beta1,
           float beta2, float eps, float weight_decay, int64_t step) {
  for (const Tensor* t : {&grad, &m, &v}) {
    if (t->shape() != param.shape())
      fail("adamw: shape {} does not match parameter {}", shape_str(t->shape()), shape_str(param.shape()));
  }
  for (const Tensor* t : {&param, &grad, &m, &v}) {
    if (t->dtype() != DType::f32) fail("adamw: tensors must be f32, got {}", dtype_name(t->dtype()));
    if (!t->is_contiguous()) fail("adamw: tensors must be contiguous");
  }
  if (step < 1) fail("adamw: step counts from 1, got {}", step);
  float* p = param.data<float>();       // (n)
  const float* g = grad.data<float>();  // (n)
  float* pm = m.data<float>();          // (n)
  float* pv = v.data<float>();          // (n)
  const int64_t n = param.numel();
  const float bc1 = float(1.0 - std::pow(double(beta1), double(step)));  // bias corrections
  const float bc2 = float(1.0 - std::pow(double(beta2), double(step)));
  const float decay = 1.f - lr * weight_decay;
  const float step_size = lr / bc1, inv_sqrt_bc2 = 1.f / std::sqrt(bc2);
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    float mi = beta1 * pm[i] + (1.f - beta1) * g[i];
    float vi = beta2 * pv[i] + (1.f - beta2) * g[i] * g[i];
    pm[i] = mi;
    pv[i] = vi;
    // lr * mhat / (sqrt(vhat) + eps) == (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
    p[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace mp::cpu
