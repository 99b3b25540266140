// Reductions (sum, max) of a (any strides) over one axis into out, which has
// a's shape with that axis set to 1.
//
// Two loop orders, chosen by where the reduced axis lies in memory:
//  - the axis is unit-stride (a row sum of (N, C) over C): each output element
//    runs down its own contiguous row;
//  - otherwise (a column sum of (N, C) over N, the bias gradient): each step
//    along the axis adds a whole contiguous row into the outputs.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/strided.h"

namespace mp::cpu {

void reduce(ReduceOp op, const Tensor& a, int axis, const Tensor& out) {
  if (axis < 0) axis += a.dim();
  Shape reduced = a.shape();
  reduced[axis] = 1;
  if (out.shape() != reduced)
    fail("reduce: output {} is not input {} with axis {} set to 1", shape_str(out.shape()), shape_str(a.shape()), axis);
  if (a.dtype() != out.dtype()) fail("reduce: dtypes {} and {} differ", dtype_name(a.dtype()), dtype_name(out.dtype()));
  const int64_t len = a.shape()[axis];  // length of the reduced axis
  const int64_t sax = a.strides()[axis];
  if (len == 0) {
    if (op == ReduceOp::max) fail("reduce: max over an empty axis of shape {}", shape_str(a.shape()));
    fill(out, 0.0);
    return;
  }

  visit_float(a.dtype(), "reduce", [&]<class T>() {
    // Walk out's shape; operand 0 is a with the reduced axis removed, operand 1 is out.
    StridedLayout<2> L(reduced, {&a.strides(), &out.strides()});
    const T* pa = a.data<T>();
    T* po = out.data<T>();
    const bool along_rows = sax == 1 || L.inner() == 1;

    for_each_row(L, [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
      if (along_rows) {
        for (int64_t j = 0; j < n; ++j) {
          const T* x = pa + off[0] + j * st[0];  // (len) with stride sax
          if (op == ReduceOp::sum) {
            Acc s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t k = 0; k < len; ++k) s += x[k * sax];
            po[off[1] + j * st[1]] = T(s);
          } else {
            T m = x[0];
#pragma omp simd reduction(max : m)
            for (int64_t k = 0; k < len; ++k) m = std::max(m, x[k * sax]);
            po[off[1] + j * st[1]] = m;
          }
        }
      } else {
        T* o = po + off[1];  // (n) with stride st[1]
        const T* x = pa + off[0];
        for (int64_t j = 0; j < n; ++j) o[j * st[1]] = x[j * st[0]];
        for (int64_t k = 1; k < len; ++k) {
          const T* xk = x + k * sax;  // the k-th slice along the axis, (n) with stride st[0]
          if (op == ReduceOp::sum) {
            for (int64_t j = 0; j < n; ++j) o[j * st[1]] += xk[j * st[0]];
          } else {
            for (int64_t j = 0; j < n; ++j) o[j * st[1]] = std::max(o[j * st[1]], xk[j * st[0]]);
          }
        }
      }
    });
  });
}

// Blocks of 64K elements summed in parallel, then the block sums in order, so
// the result does not depend on the thread count.
void add_sum_of_squares(const Tensor& x, const Tensor& sum) {
  if (!x.is_contiguous()) fail("add_sum_of_squares: x {} must be contiguous", shape_str(x.shape()));
  constexpr int64_t kBlock = 1 << 16;
  const int64_t n = x.numel(), blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks));  // (blocks)
  visit_any(x.dtype(), [&]<class T>() {
    const T* v = x.data<T>();
#pragma omp parallel for schedule(static) if (blocks > 1)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t end = std::min(n, (b + 1) * kBlock);
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = b * kBlock; i < end; ++i) {
        const double e = convert<double>(v[i]);
        s += e * e;
      }
      partial[size_t(b)] = s;
    }
  });
  double total = 0;
  for (double s : partial) total += s;
  sum.data<double>()[0] += total;
}

}  // namespace mp::cpu
