// Softmax and log-softmax along the last axis, forward and backward.
//
//   y_i = exp(x_i - m) / sum_j exp(x_j - m)          m = max_j x_j (for stability)
//   log y_i = x_i - m - log sum_j exp(x_j - m)
//
// Backward, from y and gy (per row):
//   softmax:     gx_i = y_i (gy_i - sum_j gy_j y_j)
//   log_softmax: gx_i = gy_i - exp(y_i) sum_j gy_j
#include <cmath>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/fast_math.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/row_math.h"

namespace mp::cpu {

namespace {

// Rows and columns of a (N, C) view of a contiguous tensor (last axis = C).
struct Rows {
  int64_t N, C;
  explicit Rows(const Tensor& t) : N(0), C(t.dim() ? t.shape().back() : 1) { N = C ? t.numel() / C : 0; }
};

void check(const char* what, const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) fail("{}: shapes {} and {} differ", what, shape_str(a.shape()), shape_str(b.shape()));
  if (a.dtype() != b.dtype()) fail("{}: dtypes {} and {} differ", what, dtype_name(a.dtype()), dtype_name(b.dtype()));
  if (!a.is_contiguous() || !b.is_contiguous()) fail("{}: tensors must be contiguous", what);
}

}  // namespace

void softmax(const Tensor& x, const Tensor& y, bool log) {
  check("softmax", x, y);
  visit_float(x.dtype(), "softmax", [&]<class T>() {
    const Rows r(x);
    const T* px = x.data<T>();  // (N, C)
    T* py = y.data<T>();        // (N, C)
#pragma omp parallel for schedule(static) if (r.N * r.C > (1 << 14))
    for (int64_t n = 0; n < r.N; ++n) {
      const T* xr = px + n * r.C;
      T* yr = py + n * r.C;
      const T m = row_max(xr, r.C);
      const Acc sum = sum_exp(xr, r.C, m, log ? nullptr : yr);  // softmax keeps exp(x - m) in y
      if (log) {
        const T shift = m + T(std::log(sum));
        for (int64_t c = 0; c < r.C; ++c) yr[c] = xr[c] - shift;
      } else {
        const T inv = T(1 / sum);
        for (int64_t c = 0; c < r.C; ++c) yr[c] *= inv;
      }
    }
  });
}

void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  check("softmax_backward", y, gy);
  check("softmax_backward", y, gx);
  visit_float(y.dtype(), "softmax_backward", [&]<class T>() {
    const Rows r(y);
    const T* py = y.data<T>();    // (N, C)
    const T* pgy = gy.data<T>();  // (N, C)
    T* pgx = gx.data<T>();        // (N, C)
#pragma omp parallel for schedule(static) if (r.N * r.C > (1 << 14))
    for (int64_t n = 0; n < r.N; ++n) {
      const T* yr = py + n * r.C;
      const T* gyr = pgy + n * r.C;
      T* gxr = pgx + n * r.C;
      Acc dot = 0;
      if (log) {
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < r.C; ++c) dot += gyr[c];
        for (int64_t c = 0; c < r.C; ++c) gxr[c] = gyr[c] - fast_exp(yr[c]) * T(dot);
      } else {
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < r.C; ++c) dot += gyr[c] * yr[c];
        for (int64_t c = 0; c < r.C; ++c) gxr[c] = yr[c] * (gyr[c] - T(dot));
      }
    }
  });
}

}  // namespace mp::cpu
