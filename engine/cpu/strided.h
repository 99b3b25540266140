// Walking N tensors of one shape with arbitrary strides (views, transposes,
// broadcasts with stride 0) in row-major order.
//
// The shape is first simplified: axes of size 1 are dropped and neighbouring
// axes that are contiguous in every operand are merged, so a contiguous
// tensor becomes one long row. The walk then hands out rows: a base offset per
// operand plus the length and strides of the innermost axis, and the caller's
// loop over a row is a plain strided (usually unit-stride) loop the compiler
// vectorises. Rows are split between OpenMP threads when there are many
// elements.
#pragma once
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/tensor.h"

namespace mp::cpu {

// Inside an OpenMP parallel region: this thread's equal share [begin, end) of n items.
inline std::pair<int64_t, int64_t> thread_share(int64_t n) {
#ifdef _OPENMP
  const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
  const int t = 0, nt = 1;
#endif
  return {n * t / nt, n * (t + 1) / nt};
}

template <size_t N>
struct StridedLayout {
  std::vector<int64_t> shape;                   // simplified; innermost last; at least one axis
  std::array<std::vector<int64_t>, N> strides;  // per operand, in elements

  StridedLayout(const Shape& full, const std::array<const Shape*, N>& full_strides) {
    // Keep only axes of size > 1 (a size-1 axis does not move any pointer).
    for (size_t d = 0; d < full.size(); ++d) {
      if (full[d] == 1) continue;
      shape.push_back(full[d]);
      for (size_t k = 0; k < N; ++k) strides[k].push_back((*full_strides[k])[d]);
    }
    if (shape.empty()) {  // a scalar or all-ones shape: one element
      shape.push_back(1);
      for (size_t k = 0; k < N; ++k) strides[k].push_back(0);
    }
    // Merge axis d into axis d + 1 when every operand steps through them as one.
    std::vector<int64_t> s{shape.back()};
    std::array<std::vector<int64_t>, N> st;
    for (size_t k = 0; k < N; ++k) st[k] = {strides[k].back()};
    for (int d = int(shape.size()) - 2; d >= 0; --d) {
      bool merge = true;
      for (size_t k = 0; k < N; ++k) merge = merge && strides[k][d] == st[k].back() * s.back();
      if (merge) {
        s.back() *= shape[d];
      } else {
        s.push_back(shape[d]);
        for (size_t k = 0; k < N; ++k) st[k].push_back(strides[k][d]);
      }
    }
    shape.assign(s.rbegin(), s.rend());
    for (size_t k = 0; k < N; ++k) strides[k].assign(st[k].rbegin(), st[k].rend());
  }

  int64_t inner() const { return shape.back(); }
  int64_t rows() const {
    int64_t r = 1;
    for (size_t d = 0; d + 1 < shape.size(); ++d) r *= shape[d];
    return r;
  }
};

// Calls row(offsets, n, inner_strides) for every row; offsets are per operand
// in elements. Parallel over rows when the tensor is large; `row` must be
// safe to call concurrently on different rows.
template <size_t N, class RowFn>
void for_each_row(const StridedLayout<N>& L, RowFn row) {
  const int64_t n = L.inner(), rows = L.rows();
  if (rows == 0 || n == 0) return;  // an empty tensor
  const int outer = int(L.shape.size()) - 1;
  std::array<int64_t, N> inner_strides;
  for (size_t k = 0; k < N; ++k) inner_strides[k] = L.strides[k][outer];

  // Each thread takes a contiguous range of rows and walks it like an odometer.
  auto run_range = [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> idx(outer);
    std::array<int64_t, N> off{};
    int64_t rem = r0;
    for (int d = outer - 1; d >= 0; --d) {
      idx[d] = rem % L.shape[d];
      rem /= L.shape[d];
      for (size_t k = 0; k < N; ++k) off[k] += idx[d] * L.strides[k][d];
    }
    for (int64_t r = r0; r < r1; ++r) {
      row(off, n, inner_strides);
      for (int d = outer - 1; d >= 0; --d) {  // advance the odometer by one row
        for (size_t k = 0; k < N; ++k) off[k] += L.strides[k][d];
        if (++idx[d] < L.shape[d]) break;
        for (size_t k = 0; k < N; ++k) off[k] -= L.strides[k][d] * L.shape[d];
        idx[d] = 0;
      }
    }
  };

  constexpr int64_t kParallelElements = 1 << 15;
  if (rows * n < kParallelElements) {
    run_range(0, rows);
    return;
  }
  if (rows == 1) {  // one long row: split it into pieces instead
#pragma omp parallel
    {
      const auto [c0, c1] = thread_share(n);
      std::array<int64_t, N> off;
      for (size_t k = 0; k < N; ++k) off[k] = c0 * inner_strides[k];
      if (c1 > c0) row(off, c1 - c0, inner_strides);
    }
    return;
  }
#pragma omp parallel
  {
    const auto [r0, r1] = thread_share(rows);
    run_range(r0, r1);
  }
}

}  // namespace mp::cpu
