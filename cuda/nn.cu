// Row kernels of the network layers, each forward beside its backward:
// softmax / log-softmax, layer norm, the fused softmax + cross-entropy, and
// flash-style causal attention.
//
// Row kernels (softmax, layer norm, cross-entropy): one block of 256 threads
// per row; thread j takes elements j, j + 256, ... of the row and the block
// combines the partial results (online softmax pairs, Welford moments) with
// warp shuffles and 32 values of shared memory. Each kernel is a template on
// its compute type F: float for f32 and bf16 inputs (widened on load), double
// for f64 inputs (gradient checks), as engine/backend.h promises.
#include "cuda/device_util.cuh"

namespace mp::cuda {

namespace {

constexpr int kThreads = 256;

// Launches kernel<double> for f64 rows, kernel<float> otherwise.
#define MP_LAUNCH_F(dt, kernel, grid, block, smem, ...)                            \
  do {                                                                            \
    if ((dt) == DType::f64) kernel<double><<<(grid), (block), (smem)>>>(__VA_ARGS__); \
    else kernel<float><<<(grid), (block), (smem)>>>(__VA_ARGS__);                  \
  } while (0)

// ============================================================================
// Softmax over the last axis: x, y, gy, gx (N, C); grid = N blocks.
//   y = exp(x - m) / s              log: y = x - (m + log s)
//   gx = y (gy - sum gy y)          log: gx = gy - exp(y) sum gy

template <class F>
__global__ void softmax_kernel(int64_t C, Ptr x, Ptr y, bool log) {
  __shared__ kmath::MaxSum<F> scratch[32];
  const int64_t base = int64_t(blockIdx.x) * C;
  kmath::MaxSum<F> ms;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ms = kmath::softmax_push(ms, load<F>(x, base + c));
  ms = block_reduce(ms, SoftmaxMergeOp{}, kmath::MaxSum<F>{}, scratch);
  const F lse = kmath::softmax_lse(ms), inv = F(1) / ms.s;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const F v = load<F>(x, base + c);
    store<F>(y, base + c, log ? v - lse : kmath::k_exp(v - ms.m) * inv);
  }
}

template <class F>
__global__ void softmax_backward_kernel(int64_t C, Ptr y, Ptr gy, Ptr gx, bool log) {
  __shared__ F scratch[32];
  const int64_t base = int64_t(blockIdx.x) * C;
  F dot = F(0);  // sum gy y (softmax) or sum gy (log-softmax)
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
    dot += log ? load<F>(gy, base + c) : load<F>(gy, base + c) * load<F>(y, base + c);
  dot = block_reduce(dot, SumOp{}, F(0), scratch);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const F yv = load<F>(y, base + c), g = load<F>(gy, base + c);
    store<F>(gx, base + c, log ? g - kmath::k_exp(yv) * dot : yv * (g - dot));
  }
}

// ============================================================================
// Layer norm over the last axis: x, y (N, C), w, b (C), mean, rstd (N).
//   norm = (x - mean) rstd,  y = norm w + b
// Backward, dnorm = gy w:
//   gx = rstd (dnorm - mean(dnorm) - norm mean(dnorm norm))      (a block per row)
//   gw += sum_rows gy norm,  gb += sum_rows gy                    (a column kernel)

template <class F>
__global__ void layer_norm_kernel(int64_t C, Ptr x, Ptr w, Ptr b, float eps, Ptr y, Ptr mean, Ptr rstd) {
  __shared__ kmath::Moments<F> scratch[32];
  const int64_t row = blockIdx.x, base = row * C;
  kmath::Moments<F> mo;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) mo = kmath::moments_push(mo, load<F>(x, base + c));
  mo = block_reduce(mo, MomentsMergeOp{}, kmath::Moments<F>{}, scratch);
  const F m = mo.mean, rs = kmath::moments_rstd(mo, eps);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const F norm = (load<F>(x, base + c) - m) * rs;
    store<F>(y, base + c, norm * (w.p ? load<F>(w, c) : F(1)) + (b.p ? load<F>(b, c) : F(0)));
  }
  if (threadIdx.x == 0) {
    store<F>(mean, row, m);
    store<F>(rstd, row, rs);
  }
}

template <class F>
__global__ void layer_norm_backward_x_kernel(int64_t C, Ptr gy, Ptr x, Ptr w, Ptr mean, Ptr rstd, Ptr gx) {
  __shared__ F scratch[32];
  const int64_t row = blockIdx.x, base = row * C;
  const F m = load<F>(mean, row), rs = load<F>(rstd, row);
  F sum_d = F(0), sum_dn = F(0);  // sums of dnorm and dnorm * norm
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const F norm = (load<F>(x, base + c) - m) * rs;
    const F dnorm = load<F>(gy, base + c) * (w.p ? load<F>(w, c) : F(1));
    sum_d += dnorm;
    sum_dn += dnorm * norm;
  }
  const F mean_d = block_reduce(sum_d, SumOp{}, F(0), scratch) / F(C);
  const F mean_dn = block_reduce(sum_dn, SumOp{}, F(0), scratch) / F(C);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const F norm = (load<F>(x, base + c) - m) * rs;
    const F dnorm = load<F>(gy, base + c) * (w.p ? load<F>(w, c) : F(1));
    store<F>(gx, base + c, rs * (dnorm - mean_d - norm * mean_dn));
  }
}

// gw, gb: block (32, 8); blockIdx.x picks 32 columns (one per threadIdx.x, so
// rows are read coalesced), blockIdx.y a slice of rows; the 8 row-threads are
// summed in shared memory and the block's partial added with atomicAdd.
template <class F>
__device__ inline void atomic_add(Ptr p, int64_t i, F v) {
  if (p.dt == DType::f64) atomicAdd(static_cast<double*>(p.p) + i, double(v));
  else atomicAdd(static_cast<float*>(p.p) + i, float(v));
}

template <class F>
__global__ void layer_norm_backward_wb_kernel(int64_t N, int64_t C, Ptr gy, Ptr x, Ptr mean, Ptr rstd, Ptr gw, Ptr gb) {
  __shared__ F part_w[8][33], part_b[8][33];
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  F sw = F(0), sb = F(0);
  if (c < C) {
    for (int64_t r = int64_t(blockIdx.y) * 8 + threadIdx.y; r < N; r += int64_t(gridDim.y) * 8) {
      const F g = load<F>(gy, r * C + c);
      sw += g * (load<F>(x, r * C + c) - load<F>(mean, r)) * load<F>(rstd, r);
      sb += g;
    }
  }
  part_w[threadIdx.y][threadIdx.x] = sw;
  part_b[threadIdx.y][threadIdx.x] = sb;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    for (int k = 1; k < 8; ++k) {
      sw += part_w[k][threadIdx.x];
      sb += part_b[k][threadIdx.x];
    }
    if (gw.p) atomic_add(gw, c, sw);
    if (gb.p) atomic_add(gb, c, sb);
  }
}

// ============================================================================
// Fused softmax + cross-entropy: logits (N, V), targets (N), losses (N),
// lse (N); one block per row, online softmax, so no probabilities are ever
// stored.
//   lse = m + log s,  loss = lse - x[target]
//   glogits = gscale * (exp(x - lse) - onehot(target)) with the forward's lse,
//   0 for ignored rows

__device__ inline bool bad_target(int32_t t, int ignore_index, int64_t V) {
  return t != ignore_index && (t < 0 || t >= V);
}

template <class F>
__device__ inline F row_lse(Ptr x, int64_t base, int64_t V, kmath::MaxSum<F>* scratch) {
  kmath::MaxSum<F> ms;
  for (int64_t c = threadIdx.x; c < V; c += blockDim.x) ms = kmath::softmax_push(ms, load<F>(x, base + c));
  return kmath::softmax_lse(block_reduce(ms, SoftmaxMergeOp{}, kmath::MaxSum<F>{}, scratch));
}

template <class F>
__global__ void cross_entropy_kernel(int64_t V, Ptr logits, const int32_t* targets, int ignore_index, Ptr losses,
                                     Ptr lse, int* err) {
  __shared__ kmath::MaxSum<F> scratch[32];
  const int64_t row = blockIdx.x, base = row * V;
  const int32_t t = targets[row];
  if (t == ignore_index || bad_target(t, ignore_index, V)) {  // uniform over the block
    if (threadIdx.x == 0) {
      store<F>(losses, row, F(0));
      store<F>(lse, row, F(0));
      if (t != ignore_index) *err = 1;
    }
    return;
  }
  const F row_log_sum = row_lse(logits, base, V, scratch);
  if (threadIdx.x == 0) {
    store<F>(lse, row, row_log_sum);
    store<F>(losses, row, row_log_sum - load<F>(logits, base + t));
  }
}

template <class F>
__global__ void cross_entropy_backward_kernel(int64_t V, Ptr logits, const int32_t* targets, Ptr lse_rows,
                                              int ignore_index, const float* gscale_p, Ptr glogits, int* err) {
  const int64_t row = blockIdx.x, base = row * V;
  const int32_t t = targets[row];
  if (t == ignore_index || bad_target(t, ignore_index, V)) {
    for (int64_t c = threadIdx.x; c < V; c += blockDim.x) store<F>(glogits, base + c, F(0));
    if (threadIdx.x == 0 && t != ignore_index) *err = 1;
    return;
  }
  const F lse = load<F>(lse_rows, row), gscale = F(*gscale_p);
  for (int64_t c = threadIdx.x; c < V; c += blockDim.x) {
    F g = gscale * kmath::k_exp(load<F>(logits, base + c) - lse);
    if (c == t) g -= gscale;
    store<F>(glogits, base + c, g);
  }
}

// The scale of the loss's mean: one block counts the targets that are not
// ignore_index (in double: exact) and writes 1 / count, or 0 if none.
__global__ void inverse_target_count_kernel(int64_t N, const int32_t* targets, int ignore_index, float* out) {
  __shared__ double scratch[32];
  double count = 0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) count += targets[n] != ignore_index ? 1.0 : 0.0;
  count = block_reduce(count, SumOp{}, 0.0, scratch);
  if (threadIdx.x == 0) *out = count > 0 ? 1.f / float(count) : 0.f;
}

// sum[0] += the sum of x's squares: one block (the order of its sums is fixed,
// so the result is the same on every run), in double.
__global__ void add_sum_of_squares_kernel(int64_t N, Ptr x, double* sum) {
  __shared__ double scratch[32];
  double s = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    const double e = load<double>(x, i);
    s += e * e;
  }
  s = block_reduce(s, SumOp{}, 0.0, scratch);
  if (threadIdx.x == 0) *sum += s;
}

// ============================================================================
// Attention, flash style: the (T, S) score matrix never exists in memory.
//   q (B, H, T, D), k, v (B, H, S, D), out (B, H, T, D), lse (B, H, T)
//   query t sees key s when s <= t + (S - T) (causal; the S - T prefix keys
//   are always visible) and key_mask[b, s] != 0.
//
// Scheme: a block of 8 warps takes 8 consecutive query rows of one (b, h),
// one row per warp. The block walks the keys in tiles of 32, loaded into
// shared memory (rows padded to D + 1 values against bank conflicts). Per
// tile, lane j scores key j of the tile (a dot product over D), the warp
// merges the tile into its running (max, sum) with the online-softmax rule,
// and then lane j owns output dims j, j + 32, ... (D <= 128: 4 accumulators).
//
// Backward (recomputing p = exp(score - lse), delta_t = sum_d gout out):
//   ds = p (gout . v_s - delta_t)
//   gq_t = scale sum_s ds k_s           kernel A: a warp per query row, like forward
//   gk_s = scale sum_t ds q_t           kernel B: a warp per key row, walking
//   gv_s = sum_t p gout_t                         query tiles; no atomics
// A fully masked query row has lse = -inf, out = 0 and no gradient.

constexpr int kWarps = 8;     // rows per block, one per warp
constexpr int kTile = 32;     // keys (or queries) per shared-memory tile
constexpr int kDpl = kMaxHeadDim / 32;  // output dims per lane, at most

__device__ inline bool key_visible(const AttnDims& d, int64_t b, int64_t t, int64_t s) {
  if (s >= d.S || t >= d.T) return false;
  if (d.causal && s > t + (d.S - d.T)) return false;
  return !d.key_mask || d.key_mask[b * d.S + s] != 0;
}

// The dropout factor of probability (bh, t, s): 1 / (1 - p) if kept, else 0;
// 1 without dropout. The CPU kernel draws the same mask (engine/cpu/attention.cpp).
__device__ inline float dropout_factor(const AttnDims& d, int64_t bh, int64_t t, int64_t s) {
  if (d.dropout <= 0.f) return 1.f;
  const uint64_t i = d.dropout_offset + uint64_t((bh * d.T + t) * d.S + s);
  return kmath::dropout_keep(d.seed, i, d.dropout) ? kmath::dropout_scale(d.dropout) : 0.f;
}

// tile (kTile, D + 1) = rows [r0, r0 + kTile) of the (rows, D) matrix at
// p + base, widened to F; rows past the end are zero.
template <class F>
__device__ inline void load_tile(F* tile, Ptr p, int64_t base, int64_t r0, int64_t rows, int D) {
  for (int e = threadIdx.x; e < kTile * D; e += blockDim.x) {
    const int r = e / D, c = e % D;
    tile[r * (D + 1) + c] = r0 + r < rows ? load<F>(p, base + (r0 + r) * D + c) : F(0);
  }
}

template <class F>
__device__ inline F dot(const F* a, const F* b, int D) {
  F s = F(0);
  for (int c = 0; c < D; ++c) s += a[c] * b[c];
  return s;
}

template <class F>
__global__ void attention_kernel(AttnDims d, Ptr q, Ptr k, Ptr v, Ptr out, F* lse) {
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  F* smem = reinterpret_cast<F*>(smem_bytes);
  const int D = int(d.D), P = D + 1;
  F* Ks = smem;               // (kTile, D + 1)
  F* Vs = Ks + kTile * P;     // (kTile, D + 1)
  F* Qs = Vs + kTile * P;     // (kWarps, D)
  F* Ps = Qs + kWarps * D;    // (kWarps, kTile)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y, b = bh / d.H;
  const int64_t t0 = int64_t(blockIdx.x) * kWarps, t = t0 + warp;
  const bool active = t < d.T;
  const int64_t qbase = bh * d.T * D, kbase = bh * d.S * D;
  F* q_row = Qs + warp * D;
  F* p_row = Ps + warp * kTile;
  if (active)
    for (int c = lane; c < D; c += 32) q_row[c] = load<F>(q, qbase + t * D + c);
  // Keys any row of this block can see (causal blocks skip the rest).
  const int64_t t_last = (t0 + kWarps < d.T ? t0 + kWarps : d.T) - 1;
  const int64_t s_end = d.causal ? t_last + (d.S - d.T) + 1 : d.S;

  F m = -INFINITY, l = F(0), acc[kDpl] = {};
  for (int64_t s0 = 0; s0 < s_end; s0 += kTile) {
    __syncthreads();  // the previous tile is no longer read
    load_tile(Ks, k, kbase, s0, d.S, D);
    load_tile(Vs, v, kbase, s0, d.S, D);
    __syncthreads();
    if (!active) continue;
    const F score = key_visible(d, b, t, s0 + lane) ? F(d.scale) * dot(q_row, Ks + lane * P, D) : F(-INFINITY);
    const F m_new = kmath::k_fmax(m, warp_max(score));
    if (m_new == -INFINITY) continue;  // nothing visible yet (the same for the whole warp)
    const F p = score == -INFINITY ? F(0) : kmath::k_exp(score - m_new);
    const F corr = kmath::k_exp(m - m_new);  // 0 on the first visible tile
    l = l * corr + warp_sum(p);
    p_row[lane] = p * dropout_factor(d, bh, t, s0 + lane);  // lse is the undropped softmax's
    __syncwarp();
    for (int r = 0; r < kDpl; ++r) {
      const int c = lane + 32 * r;
      if (c >= D) break;
      F a = acc[r] * corr;
      for (int j = 0; j < kTile; ++j) a += p_row[j] * Vs[j * P + c];
      acc[r] = a;
    }
    __syncwarp();
    m = m_new;
  }
  if (!active) return;
  const F inv = l > F(0) ? F(1) / l : F(0);
  for (int r = 0; r < kDpl; ++r) {
    const int c = lane + 32 * r;
    if (c < D) store<F>(out, qbase + t * D + c, acc[r] * inv);
  }
  if (lane == 0) lse[bh * d.T + t] = l > F(0) ? m + kmath::k_log(l) : F(-INFINITY);
}

// Kernel A: gq and delta_t = sum_d gout out, a warp per query row.
template <class F>
__global__ void attention_backward_q_kernel(AttnDims d, Ptr q, Ptr k, Ptr v, Ptr out, const F* lse, Ptr gout,
                                            Ptr gq, F* delta) {
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  F* smem = reinterpret_cast<F*>(smem_bytes);
  const int D = int(d.D), P = D + 1;
  F* Ks = smem;               // (kTile, D + 1)
  F* Vs = Ks + kTile * P;     // (kTile, D + 1)
  F* Qs = Vs + kTile * P;     // (kWarps, D)
  F* Gs = Qs + kWarps * D;    // (kWarps, D) gout rows
  F* Ps = Gs + kWarps * D;    // (kWarps, kTile) ds of the tile
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y, b = bh / d.H;
  const int64_t t0 = int64_t(blockIdx.x) * kWarps, t = t0 + warp;
  const bool active = t < d.T;
  const int64_t qbase = bh * d.T * D, kbase = bh * d.S * D;
  F* q_row = Qs + warp * D;
  F* g_row = Gs + warp * D;
  F* ds_row = Ps + warp * kTile;
  F delta_t = F(0), L = -INFINITY;
  if (active) {
    for (int c = lane; c < D; c += 32) {
      q_row[c] = load<F>(q, qbase + t * D + c);
      g_row[c] = load<F>(gout, qbase + t * D + c);
      delta_t += g_row[c] * load<F>(out, qbase + t * D + c);
    }
    delta_t = warp_sum(delta_t);
    L = lse[bh * d.T + t];
    if (lane == 0) delta[bh * d.T + t] = delta_t;
  }
  const int64_t t_last = (t0 + kWarps < d.T ? t0 + kWarps : d.T) - 1;
  const int64_t s_end = d.causal ? t_last + (d.S - d.T) + 1 : d.S;

  F acc[kDpl] = {};
  for (int64_t s0 = 0; s0 < s_end; s0 += kTile) {
    __syncthreads();
    load_tile(Ks, k, kbase, s0, d.S, D);
    load_tile(Vs, v, kbase, s0, d.S, D);
    __syncthreads();
    if (!active || L == -INFINITY) continue;
    F ds = F(0);
    if (key_visible(d, b, t, s0 + lane)) {
      const F p = kmath::k_exp(F(d.scale) * dot(q_row, Ks + lane * P, D) - L);
      ds = p * (F(dropout_factor(d, bh, t, s0 + lane)) * dot(g_row, Vs + lane * P, D) - delta_t);
    }
    ds_row[lane] = ds;
    __syncwarp();
    for (int r = 0; r < kDpl; ++r) {
      const int c = lane + 32 * r;
      if (c >= D) break;
      for (int j = 0; j < kTile; ++j) acc[r] += ds_row[j] * Ks[j * P + c];
    }
    __syncwarp();
  }
  if (!active || !gq.p) return;
  for (int r = 0; r < kDpl; ++r) {
    const int c = lane + 32 * r;
    if (c < D) store<F>(gq, qbase + t * D + c, F(d.scale) * acc[r]);
  }
}

// Kernel B: gk and gv, a warp per key row s, walking tiles of 32 queries.
template <class F>
__global__ void attention_backward_kv_kernel(AttnDims d, Ptr q, Ptr k, Ptr v, const F* lse, const F* delta,
                                             Ptr gout, Ptr gk, Ptr gv) {
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  F* smem = reinterpret_cast<F*>(smem_bytes);
  const int D = int(d.D), P = D + 1;
  F* Qs = smem;               // (kTile, D + 1) query rows
  F* Gs = Qs + kTile * P;     // (kTile, D + 1) gout rows
  F* Ls = Gs + kTile * P;     // (kTile) lse of those rows
  F* Dl = Ls + kTile;         // (kTile) delta of those rows
  F* Kw = Dl + kTile;         // (kWarps, D) this block's key rows
  F* Vw = Kw + kWarps * D;    // (kWarps, D) and value rows
  F* Ps = Vw + kWarps * D;    // (kWarps, kTile) p
  F* Ds = Ps + kWarps * kTile;  // (kWarps, kTile) ds
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y, b = bh / d.H;
  const int64_t sb = int64_t(blockIdx.x) * kWarps, s = sb + warp;
  const bool active = s < d.S;
  const int64_t qbase = bh * d.T * D, kbase = bh * d.S * D;
  F* k_row = Kw + warp * D;
  F* v_row = Vw + warp * D;
  F* p_row = Ps + warp * kTile;
  F* ds_row = Ds + warp * kTile;
  if (active)
    for (int c = lane; c < D; c += 32) {
      k_row[c] = load<F>(k, kbase + s * D + c);
      v_row[c] = load<F>(v, kbase + s * D + c);
    }
  // The first query that can see this block's first key.
  const int64_t t_begin = d.causal && sb > d.S - d.T ? sb - (d.S - d.T) : 0;

  F acc_k[kDpl] = {}, acc_v[kDpl] = {};
  for (int64_t t0 = t_begin; t0 < d.T; t0 += kTile) {
    __syncthreads();
    load_tile(Qs, q, qbase, t0, d.T, D);
    load_tile(Gs, gout, qbase, t0, d.T, D);
    if (threadIdx.x < kTile) {
      const int64_t t = t0 + threadIdx.x;
      Ls[threadIdx.x] = t < d.T ? lse[bh * d.T + t] : F(-INFINITY);
      Dl[threadIdx.x] = t < d.T ? delta[bh * d.T + t] : F(0);
    }
    __syncthreads();
    if (!active) continue;
    F p = F(0), ds = F(0);
    if (key_visible(d, b, t0 + lane, s) && Ls[lane] != -INFINITY) {  // lane i: query t0 + i
      const F f = dropout_factor(d, bh, t0 + lane, s);
      p = kmath::k_exp(F(d.scale) * dot(Qs + lane * P, k_row, D) - Ls[lane]);
      ds = p * (f * dot(Gs + lane * P, v_row, D) - Dl[lane]);
      p *= f;  // dV sees the dropped probabilities
    }
    p_row[lane] = p;
    ds_row[lane] = ds;
    __syncwarp();
    for (int r = 0; r < kDpl; ++r) {
      const int c = lane + 32 * r;
      if (c >= D) break;
      for (int i = 0; i < kTile; ++i) {
        acc_v[r] += p_row[i] * Gs[i * P + c];
        acc_k[r] += ds_row[i] * Qs[i * P + c];
      }
    }
    __syncwarp();
  }
  if (!active) return;
  for (int r = 0; r < kDpl; ++r) {
    const int c = lane + 32 * r;
    if (c >= D) break;
    if (gk.p) store<F>(gk, kbase + s * D + c, F(d.scale) * acc_k[r]);
    if (gv.p) store<F>(gv, kbase + s * D + c, acc_v[r]);
  }
}

// Bytes of shared memory of kernel `which` (0 forward, 1 backward A, 2
// backward B) for head size D and compute type F.
template <class F>
size_t attention_smem(int D, int which) {
  const size_t P = size_t(D) + 1;
  switch (which) {
    case 0: return (2 * kTile * P + kWarps * D + kWarps * kTile) * sizeof(F);
    case 1: return (2 * kTile * P + 2 * kWarps * D + kWarps * kTile) * sizeof(F);
    default: return (2 * kTile * P + 2 * kTile + 2 * kWarps * D + 2 * kWarps * kTile) * sizeof(F);
  }
}

// Kernels asking for more than the default 48 KiB of shared memory (f64 at
// D = 128) must say so; the most any of them needs is 85 KiB
// (sm_80 allows 163 KiB, sm_90 227 KiB). A failure here is left in
// cudaGetLastError, so the backend's check after the launch reports it.
template <class K>
void allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024) cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

template <class F>
void run_attention(const AttnDims& d, Ptr q, Ptr k, Ptr v, Ptr out, Ptr lse) {
  const dim3 grid(unsigned((d.T + kWarps - 1) / kWarps), unsigned(d.B * d.H));
  const size_t smem = attention_smem<F>(int(d.D), 0);
  allow_smem(attention_kernel<F>, smem);
  attention_kernel<F><<<grid, kWarps * 32, smem>>>(d, q, k, v, out, static_cast<F*>(lse.p));
}

template <class F>
void run_attention_backward(const AttnDims& d, Ptr q, Ptr k, Ptr v, Ptr out, Ptr lse, Ptr gout, Ptr gq, Ptr gk, Ptr gv,
                            Ptr delta) {
  const F* l = static_cast<const F*>(lse.p);
  F* dl = static_cast<F*>(delta.p);
  const dim3 grid_q(unsigned((d.T + kWarps - 1) / kWarps), unsigned(d.B * d.H));
  const size_t smem_q = attention_smem<F>(int(d.D), 1);
  allow_smem(attention_backward_q_kernel<F>, smem_q);
  attention_backward_q_kernel<F><<<grid_q, kWarps * 32, smem_q>>>(d, q, k, v, out, l, gout, gq, dl);
  if (gk.p || gv.p) {
    const dim3 grid_kv(unsigned((d.S + kWarps - 1) / kWarps), unsigned(d.B * d.H));
    const size_t smem_kv = attention_smem<F>(int(d.D), 2);
    allow_smem(attention_backward_kv_kernel<F>, smem_kv);
    attention_backward_kv_kernel<F><<<grid_kv, kWarps * 32, smem_kv>>>(d, q, k, v, l, dl, gout, gk, gv);
  }
}

}  // namespace

void launch_softmax(int64_t N, int64_t C, Ptr x, Ptr y, bool log) {
  if (N > 0) MP_LAUNCH_F(x.dt, softmax_kernel, unsigned(N), kThreads, 0, C, x, y, log);
}

void launch_softmax_backward(int64_t N, int64_t C, Ptr y, Ptr gy, Ptr gx, bool log) {
  if (N > 0) MP_LAUNCH_F(y.dt, softmax_backward_kernel, unsigned(N), kThreads, 0, C, y, gy, gx, log);
}

void launch_layer_norm(int64_t N, int64_t C, Ptr x, Ptr w, Ptr b, float eps, Ptr y, Ptr mean, Ptr rstd) {
  if (N > 0) MP_LAUNCH_F(x.dt, layer_norm_kernel, unsigned(N), kThreads, 0, C, x, w, b, eps, y, mean, rstd);
}

void launch_layer_norm_backward(int64_t N, int64_t C, Ptr gy, Ptr x, Ptr w, Ptr mean, Ptr rstd, Ptr gx, Ptr gw,
                                Ptr gb) {
  if (N == 0 || C == 0) return;
  if (gx.p) MP_LAUNCH_F(x.dt, layer_norm_backward_x_kernel, unsigned(N), kThreads, 0, C, gy, x, w, mean, rstd, gx);
  if (gw.p || gb.p) {
    const dim3 block(32, 8);
    const int64_t row_blocks = (N + 7) / 8;
    const dim3 grid(unsigned((C + 31) / 32), unsigned(row_blocks < 256 ? row_blocks : 256));
    MP_LAUNCH_F(x.dt, layer_norm_backward_wb_kernel, grid, block, 0, N, C, gy, x, mean, rstd, gw, gb);
  }
}

void launch_cross_entropy(int64_t N, int64_t V, Ptr logits, const int32_t* targets, int ignore_index, Ptr losses,
                          Ptr lse, int* err) {
  if (N > 0)
    MP_LAUNCH_F(logits.dt, cross_entropy_kernel, unsigned(N), kThreads, 0, V, logits, targets, ignore_index, losses,
                lse, err);
}

void launch_cross_entropy_backward(int64_t N, int64_t V, Ptr logits, const int32_t* targets, Ptr lse,
                                   int ignore_index, const float* gscale, Ptr glogits, int* err) {
  if (N > 0)
    MP_LAUNCH_F(logits.dt, cross_entropy_backward_kernel, unsigned(N), kThreads, 0, V, logits, targets, lse,
                ignore_index, gscale, glogits, err);
}

void launch_inverse_target_count(int64_t N, const int32_t* targets, int ignore_index, float* out) {
  inverse_target_count_kernel<<<1, kThreads>>>(N, targets, ignore_index, out);
}

void launch_add_sum_of_squares(int64_t N, Ptr x, double* sum) {
  add_sum_of_squares_kernel<<<1, 1024>>>(N, x, sum);
}

void launch_attention(const AttnDims& d, Ptr q, Ptr k, Ptr v, Ptr out, Ptr lse) {
  if (d.B * d.H == 0 || d.T == 0) return;
  if (lse.dt == DType::f64) run_attention<double>(d, q, k, v, out, lse);
  else run_attention<float>(d, q, k, v, out, lse);
}

void launch_attention_backward(const AttnDims& d, Ptr q, Ptr k, Ptr v, Ptr out, Ptr lse, Ptr gout, Ptr gq, Ptr gk,
                               Ptr gv, Ptr delta) {
  if (d.B * d.H == 0 || d.T == 0) return;
  if (lse.dt == DType::f64) run_attention_backward<double>(d, q, k, v, out, lse, gout, gq, gk, gv, delta);
  else run_attention_backward<float>(d, q, k, v, out, lse, gout, gq, gk, gv, delta);
}

}  // namespace mp::cuda
