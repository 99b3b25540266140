// Layer normalisation over the last axis, forward and backward.
//
// Forward, per row x (C):
//   mean = sum x / C,  rstd = 1 / sqrt(sum (x - mean)^2 / C + eps)
//   norm = (x - mean) * rstd,  y = norm * w + b
// Backward, per row, with dnorm = gy * w:
//   gx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
//   gw += sum over rows of gy * norm,  gb += sum over rows of gy
// Rows run in parallel; gw and gb are summed per thread and the partials then
// added in thread order, so the result does not depend on timing. A row's
// sums accumulate in T (f32 for f32, as PyTorch's CPU kernel does): a row
// is short (C = 768 for GPT-2) and f32 lanes vectorise twice as wide.
#include <cmath>
#include <vector>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mp::cpu {

namespace {

void check_rows(const char* what, const Tensor& t, int64_t numel, DType dt) {
  if (!t.defined()) return;
  if (t.numel() != numel) fail("{}: tensor of shape {} should have {} elements", what, shape_str(t.shape()), numel);
  if (t.dtype() != dt) fail("{}: dtype {} should be {}", what, dtype_name(t.dtype()), dtype_name(dt));
  if (!t.is_contiguous()) fail("{}: tensors must be contiguous", what);
}

}  // namespace

void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& y, const Tensor& mean,
                const Tensor& rstd) {
  const int64_t C = x.shape().back(), N = C ? x.numel() / C : 0;
  check_rows("layer_norm", x, N * C, x.dtype());
  check_rows("layer_norm", y, N * C, x.dtype());
  check_rows("layer_norm", w, C, x.dtype());
  check_rows("layer_norm", b, C, x.dtype());
  check_rows("layer_norm", mean, N, x.dtype());
  check_rows("layer_norm", rstd, N, x.dtype());
  visit_float(x.dtype(), "layer_norm", [&]<class T>() {
    const T* px = x.data<T>();                         // (N, C)
    const T* pw = w.defined() ? w.data<T>() : nullptr;  // (C), or 1
    const T* pb = b.defined() ? b.data<T>() : nullptr;  // (C), or 0
    T* py = y.data<T>();                               // (N, C)
    T* pmean = mean.data<T>();                         // (N)
    T* prstd = rstd.data<T>();                         // (N)
#pragma omp parallel for schedule(static) if (N * C > (1 << 14))
    for (int64_t n = 0; n < N; ++n) {
      const T* xr = px + n * C;
      T* yr = py + n * C;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t c = 0; c < C; ++c) s += xr[c];
      const T m = s / T(C);
      T v = 0;
#pragma omp simd reduction(+ : v)
      for (int64_t c = 0; c < C; ++c) v += (xr[c] - m) * (xr[c] - m);
      const T rs = T(1) / std::sqrt(v / T(C) + T(eps));
      for (int64_t c = 0; c < C; ++c) {
        T norm = (xr[c] - m) * rs;
        yr[c] = norm * (pw ? pw[c] : T(1)) + (pb ? pb[c] : T(0));
      }
      pmean[n] = m;
      prstd[n] = rs;
    }
  });
}

void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                         const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  const int64_t C = x.shape().back(), N = C ? x.numel() / C : 0;
  check_rows("layer_norm_backward", gy, N * C, x.dtype());
  check_rows("layer_norm_backward", x, N * C, x.dtype());
  check_rows("layer_norm_backward", gx, N * C, x.dtype());
  check_rows("layer_norm_backward", w, C, x.dtype());
  check_rows("layer_norm_backward", gw, C, x.dtype());
  check_rows("layer_norm_backward", gb, C, x.dtype());
  check_rows("layer_norm_backward", mean, N, x.dtype());
  check_rows("layer_norm_backward", rstd, N, x.dtype());
  visit_float(x.dtype(), "layer_norm_backward", [&]<class T>() {
    const T* pgy = gy.data<T>();                        // (N, C)
    const T* px = x.data<T>();                          // (N, C)
    const T* pw = w.defined() ? w.data<T>() : nullptr;   // (C)
    const T* pmean = mean.data<T>();                    // (N)
    const T* prstd = rstd.data<T>();                    // (N)
    T* pgx = gx.defined() ? gx.data<T>() : nullptr;      // (N, C)
    const bool want_w = gw.defined(), want_b = gb.defined();
    const int threads = N * C > (1 << 14) ? max_threads() : 1;
    // Per-thread partial sums for gw and gb: (threads, 2, C).
    std::vector<T> partial(want_w || want_b ? size_t(threads) * 2 * size_t(C) : 0, T(0));

#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
      const int t = 0, nt = 1;
#endif
      T* pw_part = partial.empty() ? nullptr : partial.data() + size_t(t) * 2 * size_t(C);  // (C)
      T* pb_part = pw_part ? pw_part + C : nullptr;                                        // (C)
      for (int64_t n = N * t / nt; n < N * (t + 1) / nt; ++n) {
        const T* gyr = pgy + n * C;
        const T* xr = px + n * C;
        const T m = pmean[n], rs = prstd[n];
        if (pgx) {
          T dnorm_sum = 0, dnorm_norm_sum = 0;
#pragma omp simd reduction(+ : dnorm_sum, dnorm_norm_sum)
          for (int64_t c = 0; c < C; ++c) {
            T norm = (xr[c] - m) * rs;
            T dnorm = gyr[c] * (pw ? pw[c] : T(1));
            dnorm_sum += dnorm;
            dnorm_norm_sum += dnorm * norm;
          }
          const T dnorm_mean = dnorm_sum / T(C), dnorm_norm_mean = dnorm_norm_sum / T(C);
          T* gxr = pgx + n * C;
          for (int64_t c = 0; c < C; ++c) {
            T norm = (xr[c] - m) * rs;
            T dnorm = gyr[c] * (pw ? pw[c] : T(1));
            gxr[c] = rs * (dnorm - dnorm_mean - norm * dnorm_norm_mean);
          }
        }
        if (pw_part) {
          for (int64_t c = 0; c < C; ++c) {
            pw_part[c] += gyr[c] * (xr[c] - m) * rs;
            pb_part[c] += gyr[c];
          }
        }
      }
    }
    // Add the partials in thread order.
    T* pgw = want_w ? gw.data<T>() : nullptr;
    T* pgb = want_b ? gb.data<T>() : nullptr;
    for (int t = 0; t < threads && !partial.empty(); ++t) {
      const T* part = partial.data() + size_t(t) * 2 * size_t(C);
      for (int64_t c = 0; c < C; ++c) {
        if (pgw) pgw[c] += part[c];
        if (pgb) pgb[c] += part[C + c];
      }
    }
  });
}

}  // namespace mp::cpu
