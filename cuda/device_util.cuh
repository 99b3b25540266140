// Device-side helpers shared by the .cu files: loads and stores that widen and
// narrow by a runtime dtype, the strided index walk, and warp/block reductions.
// Internal to cuda/ (needs nvcc).
#pragma once
#include <cuda_runtime.h>

#include "cuda/kernel_math.h"
#include "cuda/kernels.h"

namespace mp::cuda {

// Element i of p, widened to T.
template <class T>
__device__ inline T load(Ptr p, int64_t i) {
  switch (p.dt) {
    case DType::f32: return T(static_cast<const float*>(p.p)[i]);
    case DType::bf16: return T(kmath::bf16_widen(static_cast<const uint16_t*>(p.p)[i]));
    case DType::i32: return T(static_cast<const int32_t*>(p.p)[i]);
    case DType::f64: return T(static_cast<const double*>(p.p)[i]);
    case DType::u8: return T(static_cast<const uint8_t*>(p.p)[i]);
  }
  return T(0);
}

// p[i] = v, narrowed to p's dtype (bf16 through float, as on the CPU).
template <class T>
__device__ inline void store(Ptr p, int64_t i, T v) {
  switch (p.dt) {
    case DType::f32: static_cast<float*>(p.p)[i] = float(v); break;
    case DType::bf16: static_cast<uint16_t*>(p.p)[i] = kmath::bf16_round(float(v)); break;
    case DType::i32: static_cast<int32_t*>(p.p)[i] = int32_t(v); break;
    case DType::f64: static_cast<double*>(p.p)[i] = double(v); break;
    case DType::u8: static_cast<uint8_t*>(p.p)[i] = uint8_t(v); break;
  }
}

// Row-major index i -> the offset of that element in each operand.
template <int N>
__device__ inline void offsets(const Strided<N>& L, int64_t i, int64_t (&off)[N]) {
  for (int k = 0; k < N; ++k) off[k] = 0;
  for (int d = L.ndim - 1; d >= 0; --d) {
    const int64_t c = i % L.shape[d];
    i /= L.shape[d];
    for (int k = 0; k < N; ++k) off[k] += c * L.strides[k][d];
  }
}

#define MP_GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// ---- reductions: every lane (warp_*) or every thread (block_*) gets the result

__device__ inline float shfl_xor(float v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
__device__ inline double shfl_xor(double v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
template <class T>
__device__ inline kmath::MaxSum<T> shfl_xor(kmath::MaxSum<T> v, int o) {
  kmath::MaxSum<T> r;
  r.m = shfl_xor(v.m, o);
  r.s = shfl_xor(v.s, o);
  return r;
}
template <class T>
__device__ inline kmath::Moments<T> shfl_xor(kmath::Moments<T> v, int o) {
  kmath::Moments<T> r;
  r.n = shfl_xor(v.n, o);
  r.mean = shfl_xor(v.mean, o);
  r.m2 = shfl_xor(v.m2, o);
  return r;
}

struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return kmath::k_fmax(a, b); }
};
struct SoftmaxMergeOp {
  template <class T>
  __device__ kmath::MaxSum<T> operator()(kmath::MaxSum<T> a, kmath::MaxSum<T> b) const {
    return kmath::softmax_merge(a, b);
  }
};
struct MomentsMergeOp {
  template <class T>
  __device__ kmath::Moments<T> operator()(kmath::Moments<T> a, kmath::Moments<T> b) const {
    return kmath::moments_merge(a, b);
  }
};

template <class T, class Op>
__device__ inline T warp_reduce(T v, Op op) {
  for (int o = 16; o > 0; o /= 2) v = op(v, shfl_xor(v, o));
  return v;
}

template <class T>
__device__ inline T warp_sum(T v) {
  return warp_reduce(v, SumOp{});
}
template <class T>
__device__ inline T warp_max(T v) {
  return warp_reduce(v, MaxOp{});
}

// Block-wide reduction (blockDim.x a multiple of 32, at most 1024); scratch
// holds 32 values in shared memory. `identity` pads the missing warps.
template <class T, class Op>
__device__ inline T block_reduce(T v, Op op, T identity, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_reduce(v, op);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : identity;
  return warp_reduce(v, op);
}

}  // namespace mp::cuda
