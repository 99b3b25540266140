// The maths of the CUDA kernels that works on one element or merges two
// partial results of a row: plain inline functions usable on the GPU
// (__host__ __device__ under nvcc) and on the host (g++), so that
// tests/cuda/test_kernel_math.cpp checks them on every build, GPU or not.
//
// Every formula here matches the CPU backend (engine/cpu/), the reference:
// tanh-GELU as in elementwise.cpp, Philox draws as in random.cpp, AdamW as
// in adamw.cpp. No CUDA header is included; this is plain C++.
#pragma once
#include <math.h>

#include <cstdint>
#include <cstring>

#include "engine/backend.h"
#include "engine/cpu/philox.h"

#if defined(__CUDACC__)
#define MP_HD __host__ __device__
#else
#define MP_HD
#endif

namespace mp::kmath {

// ---- math functions in float and double (the C names exist on host and device)

MP_HD inline float k_exp(float x) { return expf(x); }
MP_HD inline double k_exp(double x) { return exp(x); }
MP_HD inline float k_log(float x) { return logf(x); }
MP_HD inline double k_log(double x) { return log(x); }
MP_HD inline float k_sqrt(float x) { return sqrtf(x); }
MP_HD inline double k_sqrt(double x) { return sqrt(x); }
MP_HD inline float k_tanh(float x) { return tanhf(x); }
MP_HD inline double k_tanh(double x) { return tanh(x); }
MP_HD inline float k_fmax(float a, float b) { return fmaxf(a, b); }
MP_HD inline double k_fmax(double a, double b) { return fmax(a, b); }

// ---- bf16: the top half of a float, rounded to nearest even (NaN stays NaN)

MP_HD inline uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

MP_HD inline float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// Same rule as mp::float_to_bf16 in engine/dtype.h.
MP_HD inline uint16_t bf16_round(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
MP_HD inline float bf16_widen(uint16_t h) { return bits_float(uint32_t(h) << 16); }

// ---- GELU, tanh approximation (GPT-2's gelu_new)
//   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2),  t = tanh(u)

template <class T>
MP_HD inline T gelu(T x) {
  const T c = T(0.7978845608028654);  // sqrt(2/pi)
  T u = c * (x + T(0.044715) * x * x * x);
  return T(0.5) * x * (T(1) + k_tanh(u));
}

template <class T>
MP_HD inline T gelu_grad(T x) {
  const T c = T(0.7978845608028654);
  T u = c * (x + T(0.044715) * x * x * x);
  T t = k_tanh(u);
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * c * (T(1) + T(3 * 0.044715) * x * x);
}

// ---- unary ops and their backward (engine/backend.h: exp, sqrt, tanh take y = op(x))

template <class T>
MP_HD inline T unary_forward(UnaryOp op, T x) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return k_exp(x);
    case UnaryOp::log: return k_log(x);
    case UnaryOp::sqrt: return k_sqrt(x);
    case UnaryOp::tanh: return k_tanh(x);
    case UnaryOp::relu: return x > T(0) ? x : T(0);
    case UnaryOp::gelu: return gelu(x);
    case UnaryOp::square: return x * x;
  }
  return x;
}

// gx from v (x, or y for exp/sqrt/tanh) and gy.
template <class T>
MP_HD inline T unary_backward(UnaryOp op, T v, T g) {
  switch (op) {
    case UnaryOp::neg: return -g;
    case UnaryOp::exp: return g * v;
    case UnaryOp::log: return g / v;
    case UnaryOp::sqrt: return g * T(0.5) / v;
    case UnaryOp::tanh: return g * (T(1) - v * v);
    case UnaryOp::relu: return v > T(0) ? g : T(0);
    case UnaryOp::gelu: return g * gelu_grad(v);
    case UnaryOp::square: return g * T(2) * v;
  }
  return g;
}

template <class T>
MP_HD inline T binary_op(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::add: return x + y;
    case BinaryOp::sub: return x - y;
    case BinaryOp::mul: return x * y;
    case BinaryOp::div: return x / y;
  }
  return x;
}

// ---- Philox draws (the stream layout is engine/cpu/philox.h's and random.cpp's)

// uniform [a, b) value of element i: a + (b - a) u, computed in double like the CPU.
MP_HD inline double random_uniform(uint64_t seed, uint64_t i, double a, double b) {
  philox::U32x4 r = philox::block(seed, i / 4);
  return a + (b - a) * double(philox::uniform01(r.v[i % 4]));
}

// normal(mean a, std b) value of element i: Box-Muller on lanes (0, 1) and
// (2, 3) of block i / 4; even lanes take the cosine, odd lanes the sine.
MP_HD inline double random_normal(uint64_t seed, uint64_t i, double a, double b) {
  philox::U32x4 r = philox::block(seed, i / 4);
  const int pair = int(i % 4) / 2;
  double radius = sqrt(-2.0 * log(double(philox::uniform01_open0(r.v[2 * pair]))));
  double theta = 6.283185307179586 * double(philox::uniform01(r.v[2 * pair + 1]));
  double z = (i % 2 == 0) ? radius * cos(theta) : radius * sin(theta);
  return a + b * z;
}

// Dropout keeps element i when its uniform draw is >= p (engine/cpu/random.cpp).
MP_HD inline bool dropout_keep(uint64_t seed, uint64_t i, float p) {
  return philox::dropout_keeps(philox::block(seed, i / 4).v[i % 4], p);
}
// The scale of kept elements, 1 / (1 - p); 0 when p >= 1 (everything dropped).
MP_HD inline float dropout_scale(float p) { return p < 1.f ? 1.f / (1.f - p) : 0.f; }

// ---- AdamW on one element (torch.optim.AdamW; engine/cpu/adamw.cpp)

struct AdamW {
  float beta1, beta2, eps;
  float decay;         // 1 - lr * weight_decay
  float step_size;     // lr / (1 - beta1^t)
  float inv_sqrt_bc2;  // 1 / sqrt(1 - beta2^t)
};

// The per-step constants, the bias corrections computed in double.
inline AdamW adamw_coeffs(float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  const float bc1 = float(1.0 - pow(double(beta1), double(step)));
  const float bc2 = float(1.0 - pow(double(beta2), double(step)));
  return AdamW{beta1, beta2, eps, 1.f - lr * weight_decay, lr / bc1, 1.f / sqrtf(bc2)};
}

MP_HD inline void adamw_update(const AdamW& c, float& p, float g, float& m, float& v) {
  m = c.beta1 * m + (1.f - c.beta1) * g;
  v = c.beta2 * v + (1.f - c.beta2) * g * g;
  p = p * c.decay - c.step_size * m / (sqrtf(v) * c.inv_sqrt_bc2 + c.eps);
}

// ---- online softmax: a row's (max, sum of exp(x - max)) built from pieces,
// in float, or in double for f64 rows (gradient checks)

template <class T>
struct MaxSum {
  T m = -INFINITY;  // largest value seen
  T s = T(0);       // sum of exp(x - m) over the values seen
};

// Two partial results of disjoint parts of a row -> the result of their union.
template <class T>
MP_HD inline MaxSum<T> softmax_merge(MaxSum<T> a, MaxSum<T> b) {
  if (a.m == -INFINITY) return b;  // also avoids exp(-inf - -inf) = NaN
  if (b.m == -INFINITY) return a;
  MaxSum<T> r;
  r.m = a.m > b.m ? a.m : b.m;
  r.s = a.s * k_exp(a.m - r.m) + b.s * k_exp(b.m - r.m);
  return r;
}

template <class T>
MP_HD inline MaxSum<T> softmax_push(MaxSum<T> a, T x) {
  MaxSum<T> one;
  one.m = x;
  one.s = T(1);
  return softmax_merge(a, one);
}

// log sum exp of the row.
template <class T>
MP_HD inline T softmax_lse(MaxSum<T> a) {
  return a.m + k_log(a.s);
}

// ---- layer-norm row statistics: Welford's running mean and M2, merged with
// Chan et al.'s formula so that threads can each take part of a row.

template <class T>
struct Moments {
  T n = T(0);     // count
  T mean = T(0);  // running mean
  T m2 = T(0);    // sum of squared deviations from the mean
};

template <class T>
MP_HD inline Moments<T> moments_push(Moments<T> a, T x) {
  a.n += T(1);
  T d = x - a.mean;
  a.mean += d / a.n;
  a.m2 += d * (x - a.mean);
  return a;
}

template <class T>
MP_HD inline Moments<T> moments_merge(Moments<T> a, Moments<T> b) {
  if (a.n == T(0)) return b;
  if (b.n == T(0)) return a;
  Moments<T> r;
  r.n = a.n + b.n;
  T d = b.mean - a.mean;
  r.mean = a.mean + d * (b.n / r.n);
  r.m2 = a.m2 + b.m2 + d * d * (a.n * b.n / r.n);
  return r;
}

// rstd = 1 / sqrt(var + eps), var the biased (population) variance.
template <class T>
MP_HD inline T moments_rstd(Moments<T> a, float eps) {
  return T(1) / k_sqrt(a.m2 / a.n + T(eps));
}

}  // namespace mp::kmath
