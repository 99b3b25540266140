// Reductions along one contiguous row that the softmax-like kernels share,
// written so that gcc makes AVX-512 code of them without -ffast-math:
//
//   row_max: running maxima in AVX-512 lanes, folded at the end (gcc leaves
//     a max reduction scalar, `reduction(max)` over std::max included: it may
//     not reorder a NaN-sensitive select, so the f32 loop is written with
//     intrinsics; elsewhere, and for the tail, a scalar loop);
//   sum_exp: sum of exp(x - shift) in f32 lanes over blocks of 1024
//     elements, each block's sum added to a double, so a 50257-wide row
//     still sums accurately (the terms are in (0, 1]); softmax also keeps
//     the terms.
//
// A NaN element is skipped by row_max, as std::max(m, x) skips it.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "engine/cpu/avx512.h"

#include "engine/cpu/dispatch.h"
#include "engine/cpu/fast_math.h"

namespace mp::cpu {

MP_AVX512_BEGIN
template <class T>
T row_max(const T* x, int64_t n) {
  T m = -INFINITY;
  int64_t c = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    // Two accumulators hide vmaxps' latency. _mm512_max_ps(a, b) returns b
    // where either is NaN, so a NaN element leaves its lane as it was.
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
    for (; c + 32 <= n; c += 32) {
      m0 = _mm512_max_ps(_mm512_loadu_ps(x + c), m0);
      m1 = _mm512_max_ps(_mm512_loadu_ps(x + c + 16), m1);
    }
    m = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
  }
#endif
  for (; c < n; ++c) m = m < x[c] ? x[c] : m;
  return m;
}
MP_AVX512_END

// The sum of exp(x - shift); with y, each exp is also written to y (softmax).
template <class T>
Acc sum_exp(const T* x, int64_t n, T shift, T* y = nullptr) {
  constexpr int64_t kBlock = 1024;
  Acc total = 0;
  for (int64_t c0 = 0; c0 < n; c0 += kBlock) {
    const int64_t c1 = std::min(n, c0 + kBlock);
    T s = 0;
    if (y) {
#pragma omp simd reduction(+ : s)
      for (int64_t c = c0; c < c1; ++c) s += y[c] = fast_exp(x[c] - shift);
    } else {
#pragma omp simd reduction(+ : s)
      for (int64_t c = c0; c < c1; ++c) s += fast_exp(x[c] - shift);
    }
    total += s;
  }
  return total;
}

}  // namespace mp::cpu
