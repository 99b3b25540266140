// Elementwise kernels (copy with dtype conversion, fill, arange, mask positions, random,
// binary, unary and its backward, axpby and the gradient clip, dropout,
// AdamW), the axis reduction and the
// embedding lookup with its scatter-add backward.
//
// Parallel scheme for the strided kernels: one thread per output element,
// grid-stride loop over the element's row-major index i; the thread turns i
// into one offset per operand with the (already simplified) shape and
// strides. Element dtypes are runtime values: each load widens to the compute
// type (float, or double for f64 tensors) and each store narrows, so one
// kernel serves every dtype combination.
#include "cuda/device_util.cuh"

namespace mp::cuda {

namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return int(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}

// ---- copy, fill, random: one thread per dst element

__global__ void copy_kernel(Strided<2> L, Ptr src, Ptr dst) {
  MP_GRID_STRIDE(i, L.numel) {
    int64_t off[2];
    offsets(L, i, off);
    store<double>(dst, off[1], load<double>(src, off[0]));  // double holds every dtype exactly
  }
}

__global__ void fill_kernel(Strided<1> L, Ptr dst, double value) {
  MP_GRID_STRIDE(i, L.numel) {
    int64_t off[1];
    offsets(L, i, off);
    store<double>(dst, off[0], value);
  }
}

__global__ void arange_kernel(int64_t n, int64_t T, int32_t* dst, int64_t start) {
  MP_GRID_STRIDE(i, n) dst[i] = int32_t(start + i % T);
}

// One thread per row: the running count of kept keys, in order.
__global__ void mask_positions_kernel(int64_t B, int64_t S, int64_t T, const int32_t* mask, int32_t* out,
                                      int64_t offset) {
  MP_GRID_STRIDE(b, B) {
    int64_t kept = 0;
    for (int64_t s = 0; s < S; ++s) {
      const int64_t keep = mask[b * S + s] != 0;
      kept += keep;
      if (s >= S - T) out[b * T + (s - (S - T))] = int32_t(offset - 1 + keep * kept);
    }
  }
}

__global__ void random_kernel(Strided<1> L, Ptr dst, Distribution dist, double a, double b, uint64_t seed) {
  MP_GRID_STRIDE(i, L.numel) {
    int64_t off[1];
    offsets(L, i, off);
    double x = dist == Distribution::uniform ? kmath::random_uniform(seed, uint64_t(i), a, b)
                                             : kmath::random_normal(seed, uint64_t(i), a, b);
    store<double>(dst, off[0], x);
  }
}

// ---- binary, unary, unary backward, axpby: forward and backward side by side

template <class T>
__global__ void binary_kernel(BinaryOp op, Strided<3> L, Ptr a, Ptr b, Ptr out) {
  MP_GRID_STRIDE(i, L.numel) {
    int64_t off[3];
    offsets(L, i, off);
    store<T>(out, off[2], kmath::binary_op(op, load<T>(a, off[0]), load<T>(b, off[1])));
  }
}

template <class T>
__global__ void unary_kernel(UnaryOp op, Strided<2> L, Ptr a, Ptr out) {
  MP_GRID_STRIDE(i, L.numel) {
    int64_t off[2];
    offsets(L, i, off);
    store<T>(out, off[1], kmath::unary_forward(op, load<T>(a, off[0])));
  }
}

template <class T>
__global__ void unary_backward_kernel(UnaryOp op, Strided<3> L, Ptr v, Ptr gy, Ptr gx) {
  MP_GRID_STRIDE(i, L.numel) {
    int64_t off[3];
    offsets(L, i, off);
    store<T>(gx, off[2], kmath::unary_backward(op, load<T>(v, off[0]), load<T>(gy, off[1])));
  }
}

template <class T>
__global__ void axpby_kernel(Strided<2> L, T alpha, Ptr a, T beta, Ptr out) {
  MP_GRID_STRIDE(i, L.numel) {
    int64_t off[2];
    offsets(L, i, off);
    T r = alpha * load<T>(a, off[0]);
    if (beta != T(0)) r += beta * load<T>(out, off[1]);
    store<T>(out, off[1], r);
  }
}

// grad *= coef, coef read from the device's norm; the same f64 maths and
// float(coef) multiply as the CPU's clip_by_norm (axpby with beta 0).
template <class T>
__global__ void clip_by_norm_kernel(int64_t n, Ptr grad, const double* norm, double max_norm, double eps) {
  const double coef = max_norm / (*norm + eps);
  if (!(coef < 1.0 || isnan(coef))) return;
  const T alpha = T(float(coef));
  MP_GRID_STRIDE(i, n) store<T>(grad, i, alpha * load<T>(grad, i));
}

// ---- reduce over one axis
// Few outputs with a long axis (a full sum): one block per output, threads
// stride along the axis and combine in shared memory. Otherwise one thread
// per output, walking its axis (neighbouring threads read neighbouring
// columns for the bias-gradient case, (N, C) summed over N).

template <class T>
__device__ inline T combine(ReduceOp op, T x, T y) {
  return op == ReduceOp::sum ? x + y : (y > x ? y : x);
}

template <class T>
__global__ void reduce_thread_kernel(ReduceOp op, Strided<2> L, int64_t len, int64_t sax, Ptr a, Ptr out) {
  MP_GRID_STRIDE(i, L.numel) {
    int64_t off[2];
    offsets(L, i, off);
    T acc = load<T>(a, off[0]);
    for (int64_t k = 1; k < len; ++k) acc = combine(op, acc, load<T>(a, off[0] + k * sax));
    store<T>(out, off[1], acc);
  }
}

template <class T>
__global__ void reduce_block_kernel(ReduceOp op, Strided<2> L, int64_t len, int64_t sax, Ptr a, Ptr out) {
  __shared__ T part[kThreads];
  for (int64_t o = blockIdx.x; o < L.numel; o += gridDim.x) {
    int64_t off[2];
    offsets(L, o, off);
    T acc = load<T>(a, off[0] + int64_t(threadIdx.x < len ? threadIdx.x : 0) * sax);
    for (int64_t k = threadIdx.x + blockDim.x; k < len; k += blockDim.x) acc = combine(op, acc, load<T>(a, off[0] + k * sax));
    if (op == ReduceOp::sum && threadIdx.x >= len) acc = T(0);
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {  // tree over the block
      if (int(threadIdx.x) < w) part[threadIdx.x] = combine(op, part[threadIdx.x], part[threadIdx.x + w]);
      __syncthreads();
    }
    if (threadIdx.x == 0) store<T>(out, off[1], part[0]);
    __syncthreads();
  }
}

// ---- dropout, AdamW: contiguous, one thread per element

__global__ void dropout_kernel(int64_t n, Ptr x, Ptr out, float p, uint64_t seed, uint64_t offset) {
  const float scale = kmath::dropout_scale(p);
  MP_GRID_STRIDE(i, n) {
    float v = kmath::dropout_keep(seed, offset + uint64_t(i), p) ? load<float>(x, i) * scale : 0.f;
    store<float>(out, i, v);
  }
}

__global__ void dropout_kernel_f64(int64_t n, const double* x, double* out, float p, uint64_t seed, uint64_t offset) {
  const double scale = p < 1.f ? 1.0 / (1.0 - double(p)) : 0.0;
  MP_GRID_STRIDE(i, n) out[i] = kmath::dropout_keep(seed, offset + uint64_t(i), p) ? x[i] * scale : 0.0;
}

__global__ void adamw_kernel(int64_t n, float* param, const float* grad, float* m, float* v, kmath::AdamW c) {
  MP_GRID_STRIDE(i, n) {
    float p = param[i], mi = m[i], vi = v[i];
    kmath::adamw_update(c, p, grad[i], mi, vi);
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
  }
}

// ---- embedding: one thread per output element (n, c)
//   out[n, c] = table[ids[n], c];   backward: gtable[ids[n], c] += gout[n, c] (atomicAdd)

__global__ void embedding_kernel(int64_t N, int64_t V, int64_t C, const int32_t* ids, Ptr table, Ptr out, int* err) {
  MP_GRID_STRIDE(i, N * C) {
    const int64_t n = i / C, c = i % C;
    const int32_t id = ids[n];
    if (id < 0 || id >= V) {
      *err = 1;
      store<double>(out, i, 0.0);
    } else {
      store<double>(out, i, load<double>(table, int64_t(id) * C + c));
    }
  }
}

template <class T>
__global__ void embedding_backward_kernel(int64_t N, int64_t V, int64_t C, const int32_t* ids, const T* gout, T* gtable,
                                          int padding_idx) {
  MP_GRID_STRIDE(i, N * C) {
    const int64_t n = i / C, c = i % C;
    const int32_t id = ids[n];
    if (id >= 0 && id < V && id != padding_idx) atomicAdd(gtable + int64_t(id) * C + c, gout[i]);
  }
}

}  // namespace

void launch_copy(const Strided<2>& L, Ptr src, Ptr dst) {
  copy_kernel<<<blocks_for(L.numel), kThreads>>>(L, src, dst);
}

void launch_fill(const Strided<1>& L, Ptr dst, double value) {
  fill_kernel<<<blocks_for(L.numel), kThreads>>>(L, dst, value);
}

void launch_arange(int64_t rows, int64_t T, int32_t* dst, int64_t start) {
  const int64_t n = rows * T;
  if (n > 0) arange_kernel<<<blocks_for(n), kThreads>>>(n, T, dst, start);
}

void launch_mask_positions(int64_t B, int64_t S, int64_t T, const int32_t* mask, int32_t* out, int64_t offset) {
  if (B > 0 && T > 0) mask_positions_kernel<<<blocks_for(B), kThreads>>>(B, S, T, mask, out, offset);
}

void launch_random(const Strided<1>& L, Ptr dst, Distribution dist, double a, double b, uint64_t seed) {
  random_kernel<<<blocks_for(L.numel), kThreads>>>(L, dst, dist, a, b, seed);
}

void launch_binary(BinaryOp op, const Strided<3>& L, Ptr a, Ptr b, Ptr out, bool dbl) {
  if (dbl) binary_kernel<double><<<blocks_for(L.numel), kThreads>>>(op, L, a, b, out);
  else binary_kernel<float><<<blocks_for(L.numel), kThreads>>>(op, L, a, b, out);
}

void launch_unary(UnaryOp op, const Strided<2>& L, Ptr a, Ptr out, bool dbl) {
  if (dbl) unary_kernel<double><<<blocks_for(L.numel), kThreads>>>(op, L, a, out);
  else unary_kernel<float><<<blocks_for(L.numel), kThreads>>>(op, L, a, out);
}

void launch_unary_backward(UnaryOp op, const Strided<3>& L, Ptr v, Ptr gy, Ptr gx, bool dbl) {
  if (dbl) unary_backward_kernel<double><<<blocks_for(L.numel), kThreads>>>(op, L, v, gy, gx);
  else unary_backward_kernel<float><<<blocks_for(L.numel), kThreads>>>(op, L, v, gy, gx);
}

void launch_axpby(const Strided<2>& L, float alpha, Ptr a, float beta, Ptr out, bool dbl) {
  if (dbl) axpby_kernel<double><<<blocks_for(L.numel), kThreads>>>(L, alpha, a, beta, out);
  else axpby_kernel<float><<<blocks_for(L.numel), kThreads>>>(L, alpha, a, beta, out);
}

void launch_clip_by_norm(int64_t n, Ptr grad, const double* norm, double max_norm, double eps) {
  if (n == 0) return;
  if (grad.dt == DType::f64) clip_by_norm_kernel<double><<<blocks_for(n), kThreads>>>(n, grad, norm, max_norm, eps);
  else clip_by_norm_kernel<float><<<blocks_for(n), kThreads>>>(n, grad, norm, max_norm, eps);
}

void launch_reduce(ReduceOp op, const Strided<2>& L, int64_t len, int64_t sax, Ptr a, Ptr out, bool dbl) {
  // Sums accumulate in double, like the CPU (Acc = double); max of f32 stays in float.
  const bool d = dbl || op == ReduceOp::sum;
  if (len >= 1024 && L.numel <= 4096) {
    const int blocks = int(L.numel < 65535 ? L.numel : 65535);
    if (d) reduce_block_kernel<double><<<blocks, kThreads>>>(op, L, len, sax, a, out);
    else reduce_block_kernel<float><<<blocks, kThreads>>>(op, L, len, sax, a, out);
  } else {
    if (d) reduce_thread_kernel<double><<<blocks_for(L.numel), kThreads>>>(op, L, len, sax, a, out);
    else reduce_thread_kernel<float><<<blocks_for(L.numel), kThreads>>>(op, L, len, sax, a, out);
  }
}

void launch_dropout(int64_t n, Ptr x, Ptr out, float p, uint64_t seed, uint64_t offset) {
  if (x.dt == DType::f64)
    dropout_kernel_f64<<<blocks_for(n), kThreads>>>(n, static_cast<const double*>(x.p), static_cast<double*>(out.p), p,
                                                    seed, offset);
  else dropout_kernel<<<blocks_for(n), kThreads>>>(n, x, out, p, seed, offset);
}

void launch_embedding(int64_t N, int64_t V, int64_t C, const int32_t* ids, Ptr table, Ptr out, int* err) {
  embedding_kernel<<<blocks_for(N * C), kThreads>>>(N, V, C, ids, table, out, err);
}

void launch_embedding_backward(int64_t N, int64_t V, int64_t C, const int32_t* ids, Ptr gout, Ptr gtable,
                               int padding_idx) {
  if (gtable.dt == DType::f64)
    embedding_backward_kernel<double><<<blocks_for(N * C), kThreads>>>(
        N, V, C, ids, static_cast<const double*>(gout.p), static_cast<double*>(gtable.p), padding_idx);
  else
    embedding_backward_kernel<float><<<blocks_for(N * C), kThreads>>>(
        N, V, C, ids, static_cast<const float*>(gout.p), static_cast<float*>(gtable.p), padding_idx);
}

void launch_adamw(int64_t n, float* param, const float* grad, float* m, float* v, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t step) {
  const kmath::AdamW c = kmath::adamw_coeffs(lr, beta1, beta2, eps, weight_decay, step);
  adamw_kernel<<<blocks_for(n), kThreads>>>(n, param, grad, m, v, c);
}

const char* last_error() {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

int take_flag(int* err) {
  int h = 0;
  if (cudaMemcpy(&h, err, sizeof(int), cudaMemcpyDeviceToHost) != cudaSuccess) return -1;
  if (h && cudaMemset(err, 0, sizeof(int)) != cudaSuccess) return -1;
  return h;
}

}  // namespace mp::cuda
