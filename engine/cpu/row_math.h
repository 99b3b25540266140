// Reductions along one contiguous row that the softmax-like kernels share,
// written so that gcc makes AVX-512 code of them without -ffast-math:
//
//   row_max: 16 running maxima, one per vector lane, folded at the end (a
//     `reduction(max)` over std::max stays scalar: the compiler may not
//     reorder a NaN-sensitive select);
//   sum_exp: sum of exp(x - shift) in f32 lanes over blocks of 1024
//     elements, each block's sum added to a double, so a 50257-wide row
//     still sums accurately (the terms are in (0, 1]).
//
// A NaN element is skipped by row_max, as std::max(m, x) skips it.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/fast_math.h"

namespace mp::cpu {

template <class T>
T row_max(const T* x, int64_t n) {
  constexpr int L = 16;
  T lane[L];
  std::fill(lane, lane + L, T(-INFINITY));
  int64_t c = 0;
  for (; c + L <= n; c += L)
    for (int l = 0; l < L; ++l) lane[l] = lane[l] < x[c + l] ? x[c + l] : lane[l];
  T m = -INFINITY;
  for (; c < n; ++c) m = m < x[c] ? x[c] : m;
  for (int l = 0; l < L; ++l) m = m < lane[l] ? lane[l] : m;
  return m;
}

template <class T>
Acc sum_exp(const T* x, int64_t n, T shift) {
  constexpr int64_t kBlock = 1024;
  Acc total = 0;
  for (int64_t c0 = 0; c0 < n; c0 += kBlock) {
    const int64_t c1 = std::min(n, c0 + kBlock);
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t c = c0; c < c1; ++c) s += fast_exp(x[c] - shift);
    total += s;
  }
  return total;
}

}  // namespace mp::cpu
