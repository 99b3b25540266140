// Random fills and dropout from the Philox4x32-10 counter-based generator
// (philox.h). Element i of a tensor (row-major index) gets lane i % 4 of
// block i / 4 of the stream `seed`, so values never depend on threads.
#include <algorithm>
#include <cmath>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/dropout_factors.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/philox.h"

namespace mp::cpu {

namespace {

// Calls f(i, lanes) for each block of 4 elements [i, i + 4) of [0, n), the
// stream `seed`'s elements of the same indices; f writes only indices < n.
template <class F>
void for_each_block(int64_t n, uint64_t seed, F f) {
#pragma omp parallel for schedule(static) if (n > (1 << 14))
  for (int64_t g = 0; g < (n + 3) / 4; ++g) f(4 * g, philox::block(seed, uint64_t(g)));
}

}  // namespace

// uniform: a + (b - a) u, u in [0, 1). normal: Box-Muller on the two pairs of
// lanes (0, 1) and (2, 3): r = sqrt(-2 ln u1), z = r cos(2 pi u2) and r sin(2 pi u2).
void random(const Tensor& dst, Distribution dist, double a, double b, uint64_t seed) {
  if (!dst.is_contiguous()) {  // fill a contiguous scratch, then copy into the view
    Tensor t = workspace(dst.shape(), dst.dtype(), dst.device());
    random(t, dist, a, b, seed);
    copy(t, dst);
    return;
  }
  if (dst.dtype() == DType::i32) fail("random: dtype i32 is not supported (f32, bf16 or f64)");
  visit_any(dst.dtype(), [&]<class T>() {
    if constexpr (!std::is_same_v<T, int32_t>) {
      T* out = dst.data<T>();  // (n)
      const int64_t n = dst.numel();
      if (dist == Distribution::uniform) {
        for_each_block(n, seed, [&](int64_t i, philox::U32x4 r) {
          for (int l = 0; l < 4 && i + l < n; ++l) out[i + l] = convert<T>(a + (b - a) * double(philox::uniform01(r.v[l])));
        });
      } else {
        for_each_block(n, seed, [&](int64_t i, philox::U32x4 r) {
          double z[4];
          for (int p = 0; p < 2; ++p) {
            double radius = std::sqrt(-2.0 * std::log(double(philox::uniform01_open0(r.v[2 * p]))));
            double theta = 6.283185307179586 * double(philox::uniform01(r.v[2 * p + 1]));
            z[2 * p] = radius * std::cos(theta);
            z[2 * p + 1] = radius * std::sin(theta);
          }
          for (int l = 0; l < 4 && i + l < n; ++l) out[i + l] = convert<T>(a + b * z[l]);
        });
      }
    }
  });
}

// out = x * keep / (1 - p), keep_i = uniform(seed, offset + i) >= p. Called
// on gy with the same seed and offset it is its own backward.
void dropout(const Tensor& x, float p, uint64_t seed, uint64_t offset, const Tensor& out) {
  if (x.shape() != out.shape()) fail("dropout: input {} and output {} differ", shape_str(x.shape()), shape_str(out.shape()));
  if (!x.is_contiguous() || !out.is_contiguous()) fail("dropout: tensors must be contiguous");
  visit_float(x.dtype(), "dropout", [&]<class T>() {
    const T* in = x.data<T>();  // (n)
    T* o = out.data<T>();       // (n)
    const int64_t n = x.numel();
    constexpr int64_t kChunk = 1024;  // elements per task: its factors stay in L1
#pragma omp parallel for schedule(static) if (n > (1 << 14))
    for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
      const int64_t len = std::min(kChunk, n - c0);
      T f[kChunk];  // (len) 0 or 1 / (1 - p)
      dropout_factors(seed, p, offset + uint64_t(c0), len, f);
      for (int64_t i = 0; i < len; ++i) o[c0 + i] = f[i] == T(0) ? T(0) : in[c0 + i] * f[i];  // a dropped inf gives 0
    }
  });
}

}  // namespace mp::cpu
