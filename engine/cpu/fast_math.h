// exp for f32 written as branch-free polynomial code, so that loops calling
// it vectorise (the C library's expf is a scalar call).
// Cephes-style exp: x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-6
// polynomial, 2^n built in the exponent bits. Relative error about 2e-7
// (f32 round-off); below -87.3 the result is 0, above 88.7 it is inf.
// f64 keeps std::exp: it is used for checks, not speed.
//
// gcc vectorises loops calling these only with -fno-trapping-math (set for
// the engine library in engine/meson.build): otherwise it may not compute the
// polynomial unconditionally and then select, since a float op could trap.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

// Force inlining into the caller's loop: a call inside a loop stops vectorisation.
// MP_ALWAYS_LAMBDA goes between a lambda's parameters and its body.
#if defined(__GNUC__)
#define MP_ALWAYS_INLINE [[gnu::always_inline]] inline
#define MP_ALWAYS_LAMBDA __attribute__((always_inline))
#else
#define MP_ALWAYS_INLINE inline
#define MP_ALWAYS_LAMBDA
#endif

namespace mp::cpu {

MP_ALWAYS_INLINE float fast_exp(float x) {
  const float hi = 88.7228f, lo = -87.3365f;
  float xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  // n = round(x / ln2) by the 1.5 * 2^23 trick (a branch-free, vectorisable round; std::floor is not).
  const float n = (xc * 1.44269504088896341f + 12582912.f) - 12582912.f;
  float r = xc - n * 0.693359375f;                                // r = x - n ln2, ln2 split in two parts
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.f;                                          // exp(r)
  const float scale = std::bit_cast<float>(uint32_t(int32_t(n) + 127) << 23);  // 2^n
  const float y = e * scale;
  float out = x < lo ? 0.f : y;  // out of range: 0 below, inf above
  out = x > hi ? INFINITY : out;
  return out;
}
inline double fast_exp(double x) { return std::exp(x); }

}  // namespace mp::cpu
