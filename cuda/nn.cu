// Row kernels of the network layers, each forward beside its backward:
// softmax / log-softmax, layer norm, the fused softmax + cross-entropy, and
// flash-style causal attention.
//
// Row kernels (softmax, layer norm, cross-entropy): one block of 256 threads
// per row; thread j takes elements j, j + 256, ... of the row and the block
// combines the partial results (online softmax pairs, Welford moments) with
// warp shuffles and 32 values of shared memory. All maths in f32; inputs of
// any float dtype are widened on load.
#include "cuda/device_util.cuh"

namespace mp::cuda {

namespace {

constexpr int kThreads = 256;

// ============================================================================
// Softmax over the last axis: x, y, gy, gx (N, C); grid = N blocks.
//   y = exp(x - m) / s              log: y = x - (m + log s)
//   gx = y (gy - sum gy y)          log: gx = gy - exp(y) sum gy

__global__ void softmax_kernel(int64_t C, Ptr x, Ptr y, bool log) {
  __shared__ kmath::MaxSum scratch[32];
  const int64_t base = int64_t(blockIdx.x) * C;
  kmath::MaxSum ms;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ms = kmath::softmax_push(ms, load<float>(x, base + c));
  ms = block_reduce(ms, SoftmaxMergeOp{}, kmath::MaxSum{}, scratch);
  const float lse = kmath::softmax_lse(ms), inv = 1.f / ms.s;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = load<float>(x, base + c);
    store<float>(y, base + c, log ? v - lse : expf(v - ms.m) * inv);
  }
}

__global__ void softmax_backward_kernel(int64_t C, Ptr y, Ptr gy, Ptr gx, bool log) {
  __shared__ float scratch[32];
  const int64_t base = int64_t(blockIdx.x) * C;
  float dot = 0.f;  // sum gy y (softmax) or sum gy (log-softmax)
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
    dot += log ? load<float>(gy, base + c) : load<float>(gy, base + c) * load<float>(y, base + c);
  dot = block_reduce(dot, SumOp{}, 0.f, scratch);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float yv = load<float>(y, base + c), g = load<float>(gy, base + c);
    store<float>(gx, base + c, log ? g - expf(yv) * dot : yv * (g - dot));
  }
}

// ============================================================================
// Layer norm over the last axis: x, y (N, C), w, b (C), mean, rstd (N).
//   norm = (x - mean) rstd,  y = norm w + b
// Backward, dnorm = gy w:
//   gx = rstd (dnorm - mean(dnorm) - norm mean(dnorm norm))      (a block per row)
//   gw += sum_rows gy norm,  gb += sum_rows gy                    (a column kernel)

__global__ void layer_norm_kernel(int64_t C, Ptr x, Ptr w, Ptr b, float eps, Ptr y, Ptr mean, Ptr rstd) {
  __shared__ kmath::Moments scratch[32];
  const int64_t row = blockIdx.x, base = row * C;
  kmath::Moments mo;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) mo = kmath::moments_push(mo, load<float>(x, base + c));
  mo = block_reduce(mo, MomentsMergeOp{}, kmath::Moments{}, scratch);
  const float m = mo.mean, rs = kmath::moments_rstd(mo, eps);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float norm = (load<float>(x, base + c) - m) * rs;
    store<float>(y, base + c, norm * (w.p ? load<float>(w, c) : 1.f) + (b.p ? load<float>(b, c) : 0.f));
  }
  if (threadIdx.x == 0) {
    store<float>(mean, row, m);
    store<float>(rstd, row, rs);
  }
}

__global__ void layer_norm_backward_x_kernel(int64_t C, Ptr gy, Ptr x, Ptr w, Ptr mean, Ptr rstd, Ptr gx) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x, base = row * C;
  const float m = load<float>(mean, row), rs = load<float>(rstd, row);
  float sum_d = 0.f, sum_dn = 0.f;  // sums of dnorm and dnorm * norm
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float norm = (load<float>(x, base + c) - m) * rs;
    const float dnorm = load<float>(gy, base + c) * (w.p ? load<float>(w, c) : 1.f);
    sum_d += dnorm;
    sum_dn += dnorm * norm;
  }
  const float mean_d = block_reduce(sum_d, SumOp{}, 0.f, scratch) / float(C);
  const float mean_dn = block_reduce(sum_dn, SumOp{}, 0.f, scratch) / float(C);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float norm = (load<float>(x, base + c) - m) * rs;
    const float dnorm = load<float>(gy, base + c) * (w.p ? load<float>(w, c) : 1.f);
    store<float>(gx, base + c, rs * (dnorm - mean_d - norm * mean_dn));
  }
}

// gw, gb: block (32, 8); blockIdx.x picks 32 columns (one per threadIdx.x, so
// rows are read coalesced), blockIdx.y a slice of rows; the 8 row-threads are
// summed in shared memory and the block's partial added with atomicAdd.
__device__ inline void atomic_add(Ptr p, int64_t i, float v) {
  if (p.dt == DType::f64) atomicAdd(static_cast<double*>(p.p) + i, double(v));
  else atomicAdd(static_cast<float*>(p.p) + i, v);
}

__global__ void layer_norm_backward_wb_kernel(int64_t N, int64_t C, Ptr gy, Ptr x, Ptr mean, Ptr rstd, Ptr gw, Ptr gb) {
  __shared__ float part_w[8][33], part_b[8][33];
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  float sw = 0.f, sb = 0.f;
  if (c < C) {
    for (int64_t r = int64_t(blockIdx.y) * 8 + threadIdx.y; r < N; r += int64_t(gridDim.y) * 8) {
      const float g = load<float>(gy, r * C + c);
      sw += g * (load<float>(x, r * C + c) - load<float>(mean, r)) * load<float>(rstd, r);
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
// Fused softmax + cross-entropy: logits (N, V), targets (N), losses (N);
// one block per row, online softmax, so no probabilities are ever stored.
//   loss = (m + log s) - x[target]
//   glogits = gscale * (exp(x - lse) - onehot(target)), 0 for ignored rows

__device__ inline bool bad_target(int32_t t, int ignore_index, int64_t V) {
  return t != ignore_index && (t < 0 || t >= V);
}

__device__ inline float row_lse(Ptr x, int64_t base, int64_t V, kmath::MaxSum* scratch) {
  kmath::MaxSum ms;
  for (int64_t c = threadIdx.x; c < V; c += blockDim.x) ms = kmath::softmax_push(ms, load<float>(x, base + c));
  return kmath::softmax_lse(block_reduce(ms, SoftmaxMergeOp{}, kmath::MaxSum{}, scratch));
}

__global__ void cross_entropy_kernel(int64_t V, Ptr logits, const int32_t* targets, int ignore_index, Ptr losses,
                                     int* err) {
  __shared__ kmath::MaxSum scratch[32];
  const int64_t row = blockIdx.x, base = row * V;
  const int32_t t = targets[row];
  if (t == ignore_index || bad_target(t, ignore_index, V)) {  // uniform over the block
    if (threadIdx.x == 0) {
      store<float>(losses, row, 0.f);
      if (t != ignore_index) *err = 1;
    }
    return;
  }
  const float lse = row_lse(logits, base, V, scratch);
  if (threadIdx.x == 0) store<float>(losses, row, lse - load<float>(logits, base + t));
}

__global__ void cross_entropy_backward_kernel(int64_t V, Ptr logits, const int32_t* targets, int ignore_index,
                                              float gscale, Ptr glogits, int* err) {
  __shared__ kmath::MaxSum scratch[32];
  const int64_t row = blockIdx.x, base = row * V;
  const int32_t t = targets[row];
  if (t == ignore_index || bad_target(t, ignore_index, V)) {
    for (int64_t c = threadIdx.x; c < V; c += blockDim.x) store<float>(glogits, base + c, 0.f);
    if (threadIdx.x == 0 && t != ignore_index) *err = 1;
    return;
  }
  const float lse = row_lse(logits, base, V, scratch);
  for (int64_t c = threadIdx.x; c < V; c += blockDim.x) {
    float g = gscale * expf(load<float>(logits, base + c) - lse);
    if (c == t) g -= gscale;
    store<float>(glogits, base + c, g);
  }
}

// ============================================================================
// Attention, flash style: the (T, S) score matrix never exists in memory.
//   q (B, H, T, D), k, v (B, H, S, D), out (B, H, T, D), lse (B, H, T)
//   query t sees key s when s <= t + (S - T) (causal; the S - T prefix keys
//   are always visible) and key_mask[b, s] != 0.
//
// Scheme: a block of 8 warps takes 8 consecutive query rows of one (b, h),
// one row per warp. The block walks the keys in tiles of 32, loaded into
// shared memory (rows padded to D + 1 floats against bank conflicts). Per
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
  const uint64_t i = uint64_t((bh * d.T + t) * d.S + s);
  return kmath::dropout_keep(d.seed, i, d.dropout) ? kmath::dropout_scale(d.dropout) : 0.f;
}

// tile (kTile, D + 1) = rows [r0, r0 + kTile) of the (rows, D) matrix at
// p + base, widened to float; rows past the end are zero.
__device__ inline void load_tile(float* tile, Ptr p, int64_t base, int64_t r0, int64_t rows, int D) {
  for (int e = threadIdx.x; e < kTile * D; e += blockDim.x) {
    const int r = e / D, c = e % D;
    tile[r * (D + 1) + c] = r0 + r < rows ? load<float>(p, base + (r0 + r) * D + c) : 0.f;
  }
}

__device__ inline float dot(const float* a, const float* b, int D) {
  float s = 0.f;
  for (int c = 0; c < D; ++c) s += a[c] * b[c];
  return s;
}

__global__ void attention_kernel(AttnDims d, Ptr q, Ptr k, Ptr v, Ptr out, float* lse) {
  extern __shared__ float smem[];
  const int D = int(d.D), P = D + 1;
  float* Ks = smem;               // (kTile, D + 1)
  float* Vs = Ks + kTile * P;     // (kTile, D + 1)
  float* Qs = Vs + kTile * P;     // (kWarps, D)
  float* Ps = Qs + kWarps * D;    // (kWarps, kTile)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y, b = bh / d.H;
  const int64_t t0 = int64_t(blockIdx.x) * kWarps, t = t0 + warp;
  const bool active = t < d.T;
  const int64_t qbase = bh * d.T * D, kbase = bh * d.S * D;
  float* q_row = Qs + warp * D;
  float* p_row = Ps + warp * kTile;
  if (active)
    for (int c = lane; c < D; c += 32) q_row[c] = load<float>(q, qbase + t * D + c);
  // Keys any row of this block can see (causal blocks skip the rest).
  const int64_t t_last = (t0 + kWarps < d.T ? t0 + kWarps : d.T) - 1;
  const int64_t s_end = d.causal ? t_last + (d.S - d.T) + 1 : d.S;

  float m = -INFINITY, l = 0.f, acc[kDpl] = {};
  for (int64_t s0 = 0; s0 < s_end; s0 += kTile) {
    __syncthreads();  // the previous tile is no longer read
    load_tile(Ks, k, kbase, s0, d.S, D);
    load_tile(Vs, v, kbase, s0, d.S, D);
    __syncthreads();
    if (!active) continue;
    const float score = key_visible(d, b, t, s0 + lane) ? d.scale * dot(q_row, Ks + lane * P, D) : -INFINITY;
    const float m_new = fmaxf(m, warp_max(score));
    if (m_new == -INFINITY) continue;  // nothing visible yet (the same for the whole warp)
    const float p = score == -INFINITY ? 0.f : expf(score - m_new);
    const float corr = expf(m - m_new);  // 0 on the first visible tile
    l = l * corr + warp_sum(p);
    p_row[lane] = p * dropout_factor(d, bh, t, s0 + lane);  // lse is the undropped softmax's
    __syncwarp();
    for (int r = 0; r < kDpl; ++r) {
      const int c = lane + 32 * r;
      if (c >= D) break;
      float a = acc[r] * corr;
      for (int j = 0; j < kTile; ++j) a += p_row[j] * Vs[j * P + c];
      acc[r] = a;
    }
    __syncwarp();
    m = m_new;
  }
  if (!active) return;
  const float inv = l > 0.f ? 1.f / l : 0.f;
  for (int r = 0; r < kDpl; ++r) {
    const int c = lane + 32 * r;
    if (c < D) store<float>(out, qbase + t * D + c, acc[r] * inv);
  }
  if (lane == 0) lse[bh * d.T + t] = l > 0.f ? m + logf(l) : -INFINITY;
}

// Kernel A: gq and delta_t = sum_d gout out, a warp per query row.
__global__ void attention_backward_q_kernel(AttnDims d, Ptr q, Ptr k, Ptr v, Ptr out, const float* lse, Ptr gout,
                                            Ptr gq, float* delta) {
  extern __shared__ float smem[];
  const int D = int(d.D), P = D + 1;
  float* Ks = smem;               // (kTile, D + 1)
  float* Vs = Ks + kTile * P;     // (kTile, D + 1)
  float* Qs = Vs + kTile * P;     // (kWarps, D)
  float* Gs = Qs + kWarps * D;    // (kWarps, D) gout rows
  float* Ps = Gs + kWarps * D;    // (kWarps, kTile) ds of the tile
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y, b = bh / d.H;
  const int64_t t0 = int64_t(blockIdx.x) * kWarps, t = t0 + warp;
  const bool active = t < d.T;
  const int64_t qbase = bh * d.T * D, kbase = bh * d.S * D;
  float* q_row = Qs + warp * D;
  float* g_row = Gs + warp * D;
  float* ds_row = Ps + warp * kTile;
  float delta_t = 0.f, L = -INFINITY;
  if (active) {
    for (int c = lane; c < D; c += 32) {
      q_row[c] = load<float>(q, qbase + t * D + c);
      g_row[c] = load<float>(gout, qbase + t * D + c);
      delta_t += g_row[c] * load<float>(out, qbase + t * D + c);
    }
    delta_t = warp_sum(delta_t);
    L = lse[bh * d.T + t];
    if (lane == 0) delta[bh * d.T + t] = delta_t;
  }
  const int64_t t_last = (t0 + kWarps < d.T ? t0 + kWarps : d.T) - 1;
  const int64_t s_end = d.causal ? t_last + (d.S - d.T) + 1 : d.S;

  float acc[kDpl] = {};
  for (int64_t s0 = 0; s0 < s_end; s0 += kTile) {
    __syncthreads();
    load_tile(Ks, k, kbase, s0, d.S, D);
    load_tile(Vs, v, kbase, s0, d.S, D);
    __syncthreads();
    if (!active || L == -INFINITY) continue;
    float ds = 0.f;
    if (key_visible(d, b, t, s0 + lane)) {
      const float p = expf(d.scale * dot(q_row, Ks + lane * P, D) - L);
      ds = p * (dropout_factor(d, bh, t, s0 + lane) * dot(g_row, Vs + lane * P, D) - delta_t);
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
    if (c < D) store<float>(gq, qbase + t * D + c, d.scale * acc[r]);
  }
}

// Kernel B: gk and gv, a warp per key row s, walking tiles of 32 queries.
__global__ void attention_backward_kv_kernel(AttnDims d, Ptr q, Ptr k, Ptr v, const float* lse, const float* delta,
                                             Ptr gout, Ptr gk, Ptr gv) {
  extern __shared__ float smem[];
  const int D = int(d.D), P = D + 1;
  float* Qs = smem;               // (kTile, D + 1) query rows
  float* Gs = Qs + kTile * P;     // (kTile, D + 1) gout rows
  float* Ls = Gs + kTile * P;     // (kTile) lse of those rows
  float* Dl = Ls + kTile;         // (kTile) delta of those rows
  float* Kw = Dl + kTile;         // (kWarps, D) this block's key rows
  float* Vw = Kw + kWarps * D;    // (kWarps, D) and value rows
  float* Ps = Vw + kWarps * D;    // (kWarps, kTile) p
  float* Ds = Ps + kWarps * kTile;  // (kWarps, kTile) ds
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y, b = bh / d.H;
  const int64_t sb = int64_t(blockIdx.x) * kWarps, s = sb + warp;
  const bool active = s < d.S;
  const int64_t qbase = bh * d.T * D, kbase = bh * d.S * D;
  float* k_row = Kw + warp * D;
  float* v_row = Vw + warp * D;
  float* p_row = Ps + warp * kTile;
  float* ds_row = Ds + warp * kTile;
  if (active)
    for (int c = lane; c < D; c += 32) {
      k_row[c] = load<float>(k, kbase + s * D + c);
      v_row[c] = load<float>(v, kbase + s * D + c);
    }
  // The first query that can see this block's first key.
  const int64_t t_begin = d.causal && sb > d.S - d.T ? sb - (d.S - d.T) : 0;

  float acc_k[kDpl] = {}, acc_v[kDpl] = {};
  for (int64_t t0 = t_begin; t0 < d.T; t0 += kTile) {
    __syncthreads();
    load_tile(Qs, q, qbase, t0, d.T, D);
    load_tile(Gs, gout, qbase, t0, d.T, D);
    if (threadIdx.x < kTile) {
      const int64_t t = t0 + threadIdx.x;
      Ls[threadIdx.x] = t < d.T ? lse[bh * d.T + t] : -INFINITY;
      Dl[threadIdx.x] = t < d.T ? delta[bh * d.T + t] : 0.f;
    }
    __syncthreads();
    if (!active) continue;
    float p = 0.f, ds = 0.f;
    if (key_visible(d, b, t0 + lane, s) && Ls[lane] != -INFINITY) {  // lane i: query t0 + i
      const float f = dropout_factor(d, bh, t0 + lane, s);
      p = expf(d.scale * dot(Qs + lane * P, k_row, D) - Ls[lane]);
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
    if (gk.p) store<float>(gk, kbase + s * D + c, d.scale * acc_k[r]);
    if (gv.p) store<float>(gv, kbase + s * D + c, acc_v[r]);
  }
}

size_t attention_smem(int D, int which) {
  const size_t P = size_t(D) + 1;
  switch (which) {
    case 0: return (2 * kTile * P + kWarps * D + kWarps * kTile) * sizeof(float);
    case 1: return (2 * kTile * P + 2 * kWarps * D + kWarps * kTile) * sizeof(float);
    default: return (2 * kTile * P + 2 * kTile + 2 * kWarps * D + 2 * kWarps * kTile) * sizeof(float);
  }
}

}  // namespace

void launch_softmax(int64_t N, int64_t C, Ptr x, Ptr y, bool log) {
  if (N > 0) softmax_kernel<<<unsigned(N), kThreads>>>(C, x, y, log);
}

void launch_softmax_backward(int64_t N, int64_t C, Ptr y, Ptr gy, Ptr gx, bool log) {
  if (N > 0) softmax_backward_kernel<<<unsigned(N), kThreads>>>(C, y, gy, gx, log);
}

void launch_layer_norm(int64_t N, int64_t C, Ptr x, Ptr w, Ptr b, float eps, Ptr y, Ptr mean, Ptr rstd) {
  if (N > 0) layer_norm_kernel<<<unsigned(N), kThreads>>>(C, x, w, b, eps, y, mean, rstd);
}

void launch_layer_norm_backward(int64_t N, int64_t C, Ptr gy, Ptr x, Ptr w, Ptr mean, Ptr rstd, Ptr gx, Ptr gw,
                                Ptr gb) {
  if (N == 0 || C == 0) return;
  if (gx.p) layer_norm_backward_x_kernel<<<unsigned(N), kThreads>>>(C, gy, x, w, mean, rstd, gx);
  if (gw.p || gb.p) {
    const dim3 block(32, 8);
    const int64_t row_blocks = (N + 7) / 8;
    const dim3 grid(unsigned((C + 31) / 32), unsigned(row_blocks < 256 ? row_blocks : 256));
    layer_norm_backward_wb_kernel<<<grid, block>>>(N, C, gy, x, mean, rstd, gw, gb);
  }
}

void launch_cross_entropy(int64_t N, int64_t V, Ptr logits, const int32_t* targets, int ignore_index, Ptr losses,
                          int* err) {
  if (N > 0) cross_entropy_kernel<<<unsigned(N), kThreads>>>(V, logits, targets, ignore_index, losses, err);
}

void launch_cross_entropy_backward(int64_t N, int64_t V, Ptr logits, const int32_t* targets, int ignore_index,
                                   float gscale, Ptr glogits, int* err) {
  if (N > 0)
    cross_entropy_backward_kernel<<<unsigned(N), kThreads>>>(V, logits, targets, ignore_index, gscale, glogits, err);
}

void launch_attention(const AttnDims& d, Ptr q, Ptr k, Ptr v, Ptr out, float* lse) {
  if (d.B * d.H == 0 || d.T == 0) return;
  const dim3 grid(unsigned((d.T + kWarps - 1) / kWarps), unsigned(d.B * d.H));
  attention_kernel<<<grid, kWarps * 32, attention_smem(int(d.D), 0)>>>(d, q, k, v, out, lse);
}

void launch_attention_backward(const AttnDims& d, Ptr q, Ptr k, Ptr v, Ptr out, const float* lse, Ptr gout, Ptr gq,
                               Ptr gk, Ptr gv, float* delta) {
  if (d.B * d.H == 0 || d.T == 0) return;
  const dim3 grid_q(unsigned((d.T + kWarps - 1) / kWarps), unsigned(d.B * d.H));
  attention_backward_q_kernel<<<grid_q, kWarps * 32, attention_smem(int(d.D), 1)>>>(d, q, k, v, out, lse, gout, gq,
                                                                                    delta);
  if (gk.p || gv.p) {
    const dim3 grid_kv(unsigned((d.S + kWarps - 1) / kWarps), unsigned(d.B * d.H));
    attention_backward_kv_kernel<<<grid_kv, kWarps * 32, attention_smem(int(d.D), 2)>>>(d, q, k, v, lse, delta, gout,
                                                                                        gk, gv);
  }
}

}  // namespace mp::cuda
