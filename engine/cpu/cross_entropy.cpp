// Fused softmax + cross-entropy over a large vocabulary.
//
// Per row of logits x (V) with target y:
//   m = max x,  lse = m + log sum exp(x - m),  loss = lse - x[y]
// Backward: glogits = gscale * (exp(x - lse) - onehot(y)) with the forward's
// lse and gscale (1) read here, in the kernel, so the softmax is one pass over the logits and (N, V) probabilities
// are never stored besides glogits. Rows whose target is ignore_index give
// loss 0 and gradient 0.
#include <cmath>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/fast_math.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/row_math.h"

namespace mp::cpu {

namespace {

struct Shape2 {
  int64_t N, V;
};

Shape2 check(const char* what, const Tensor& logits, const Tensor& targets, int ignore_index) {
  if (logits.dim() != 2) fail("{}: logits must be (N, V), got {}", what, shape_str(logits.shape()));
  const int64_t N = logits.size(0), V = logits.size(1);
  if (targets.numel() != N) fail("{}: targets {} for logits {}", what, shape_str(targets.shape()), shape_str(logits.shape()));
  if (targets.dtype() != DType::i32) fail("{}: targets must be i32, got {}", what, dtype_name(targets.dtype()));
  if (!logits.is_contiguous() || !targets.is_contiguous()) fail("{}: tensors must be contiguous", what);
  const int32_t* t = targets.data<int32_t>();
  for (int64_t n = 0; n < N; ++n)
    if (t[n] != ignore_index && (t[n] < 0 || t[n] >= V))
      fail("{}: target {} (row {}) is out of range for {} classes", what, t[n], n, V);
  return {N, V};
}

// log sum exp of one row.
template <class T>
T row_lse(const T* x, int64_t V) {
  const T m = row_max(x, V);
  return m + T(std::log(sum_exp(x, V, m)));
}

void check_row_values(const char* what, const char* name, const Tensor& t, int64_t N, DType dtype) {
  if (t.numel() != N || t.dtype() != dtype || !t.is_contiguous())
    fail("{}: {} {} must be ({}) of dtype {}", what, name, shape_str(t.shape()), N, dtype_name(dtype));
}

}  // namespace

void cross_entropy(const Tensor& logits, const Tensor& targets, int ignore_index, const Tensor& losses,
                   const Tensor& lse) {
  const Shape2 nv = check("cross_entropy", logits, targets, ignore_index);
  const int64_t N = nv.N, V = nv.V;  // not a structured binding: clang < 16 cannot capture those
  check_row_values("cross_entropy", "losses", losses, N, logits.dtype());
  check_row_values("cross_entropy", "lse", lse, N, logits.dtype());
  visit_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    const T* px = logits.data<T>();               // (N, V)
    const int32_t* pt = targets.data<int32_t>();  // (N)
    T* pl = losses.data<T>();                     // (N)
    T* plse = lse.data<T>();                      // (N)
#pragma omp parallel for schedule(static) if (N * V > (1 << 14))
    for (int64_t n = 0; n < N; ++n) {
      if (pt[n] == ignore_index) {
        pl[n] = plse[n] = T(0);
        continue;
      }
      const T* x = px + n * V;
      plse[n] = row_lse(x, V);
      pl[n] = plse[n] - x[pt[n]];
    }
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, int ignore_index,
                            const Tensor& gscale, const Tensor& glogits) {
  const Shape2 nv = check("cross_entropy_backward", logits, targets, ignore_index);
  const int64_t N = nv.N, V = nv.V;
  check_row_values("cross_entropy_backward", "lse", lse, N, logits.dtype());
  check_row_values("cross_entropy_backward", "gscale", gscale, 1, DType::f32);
  const float scale = *gscale.data<float>();
  if (glogits.shape() != logits.shape() || glogits.dtype() != logits.dtype() || !glogits.is_contiguous())
    fail("cross_entropy_backward: glogits {} must match logits {}", shape_str(glogits.shape()),
         shape_str(logits.shape()));
  visit_float(logits.dtype(), "cross_entropy_backward", [&]<class T>() {
    const T* px = logits.data<T>();               // (N, V)
    const int32_t* pt = targets.data<int32_t>();  // (N)
    const T* plse = lse.data<T>();                // (N)
    T* pg = glogits.data<T>();                    // (N, V)
#pragma omp parallel for schedule(static) if (N * V > (1 << 14))
    for (int64_t n = 0; n < N; ++n) {
      T* g = pg + n * V;
      if (pt[n] == ignore_index) {
        for (int64_t v = 0; v < V; ++v) g[v] = T(0);
        continue;
      }
      const T* x = px + n * V;
      const T row_lse = plse[n], s = T(scale);
      for (int64_t v = 0; v < V; ++v) g[v] = s * fast_exp(x[v] - row_lse);  // gscale * softmax
      g[pt[n]] -= s;
    }
  });
}

void inverse_target_count(const Tensor& targets, int ignore_index, const Tensor& out) {
  if (targets.dtype() != DType::i32 || !targets.is_contiguous())
    fail("inverse_target_count: targets {} must be contiguous i32", shape_str(targets.shape()));
  check_row_values("inverse_target_count", "out", out, 1, DType::f32);
  const int32_t* t = targets.data<int32_t>();  // (N)
  int64_t count = 0;
  for (int64_t n = 0; n < targets.numel(); ++n) count += t[n] != ignore_index;
  *out.data<float>() = count > 0 ? 1.f / float(count) : 0.f;  // every row ignored: the loss and its gradients are 0
}

}  // namespace mp::cpu
