// Scaled-dot-product attention, forward and backward, on batched GEMMs: the
// heads go in chunks whose (T, S) score matrices fit a few MiB of workspace,
// and each chunk's products are one batched GEMM (engine/cpu/matmul.cpp, so
// oneDNN's kernel for this CPU). Only the chunk's scores exist at a time;
// nothing of (T, S) size is saved for backward, which recomputes P from lse.
// A long sequence (one head per chunk) goes in blocks of queries, each
// multiplied only with the keys causal attention lets one of them see.
//
// Shapes: q (B, H, T, D), k and v (B, H, S, D) with S >= T, out (B, H, T, D),
// lse (B, H, T). The first S - T keys are a prefix (prefix tuning, or a KV
// cache) that every query sees; with `causal`, query t sees keys s <= t + S - T.
// key_mask (B, S) i32 masks keys whose entry is 0 (padding). segment_ids
// (B, T) i32 (packed rows) hide from query t the sequence's keys of other
// segments; prefix keys stay visible.
//
// Forward, for a chunk of heads (nh of them):
//   S   = scale * Q K^T                     (nh, T, S)   one batched GEMM
//   lse = log sum_s exp(S_ts)  over visible, unmasked keys s (a row softmax)
//   P   = exp(S - lse)  (0 for hidden keys)
//   O   = P V                               (nh, T, D)   one batched GEMM
// A row with no visible key gets O_t = 0 and lse_t = -inf (not NaN).
//
// Backward (the standard one), P recomputed from the saved lse:
//   D_t = dO_t . O_t,   dP = dO V^T,   dS = scale * P (dP - D)
//   dV  = P^T dO,       dQ = dS K,     dK = dS^T Q
//
// With dropout p, O = (F P) V where F_ts = keep_ts / (1 - p) is redrawn from
// Philox (lse stays the undropped softmax's). Then dV = (F P)^T dO,
// dS = scale * P (F dP - D), and D_t = dO_t . O_t still holds.
//
// Under mixed precision (AttentionParams::compute bf16) the GEMMs read bf16
// copies of Q, K, V, dO and of each chunk's (F) P and dS, made in workspace;
// the scores, the softmax, lse, D and every output stay f32.
//
// On meta tensors both are dry runs (kernels.h): the same workspace, block
// by block, and each product's scratchpad as the meta backend's matmul holds
// it, but nothing computed.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/dropout_factors.h"
#include "engine/cpu/fast_math.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/row_math.h"

namespace mp::cpu {

namespace {

struct Dims {
  int64_t B, H, T, S, D;
};

Dims check(const char* what, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) {
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4 || k.shape() != v.shape() || q.size(0) != k.size(0) ||
      q.size(1) != k.size(1) || q.size(3) != k.size(3) || k.size(2) < q.size(2))
    fail("{}: q {}, k {}, v {} are not (B, H, T, D), (B, H, S, D), (B, H, S, D) with S >= T", what,
         shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  Dims d{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
  if (p.key_mask) {
    const Tensor& m = *p.key_mask;
    if (m.dtype() != DType::i32 || m.shape() != Shape{d.B, d.S} || !m.is_contiguous())
      fail("{}: key_mask {} {} should be contiguous i32 ({}, {})", what, shape_str(m.shape()), dtype_name(m.dtype()), d.B,
           d.S);
  }
  if (p.segment_ids) {
    const Tensor& g = *p.segment_ids;
    if (g.dtype() != DType::i32 || g.shape() != Shape{d.B, d.T} || !g.is_contiguous())
      fail("{}: segment_ids {} {} should be contiguous i32 ({}, {})", what, shape_str(g.shape()), dtype_name(g.dtype()),
           d.B, d.T);
  }
  for (const Tensor* t : {&q, &k, &v}) {
    if (t->dtype() != q.dtype()) fail("{}: q, k, v dtypes differ", what);
    if (!t->is_contiguous()) fail("{}: q, k, v must be contiguous", what);
  }
  return d;
}

void check_like(const char* what, const char* name, const Tensor& t, const Shape& shape, DType dt) {
  if (!t.defined()) return;
  if (t.shape() != shape || t.dtype() != dt || !t.is_contiguous())
    fail("{}: {} is {} {}, should be contiguous {} {}", what, name, shape_str(t.shape()), dtype_name(t.dtype()),
         shape_str(shape), dtype_name(dt));
}

// The end of the keys query t may see, [0, end): all S without `causal`;
// masked keys inside it are skipped by the caller (their score is -inf).
inline int64_t visible_end(const Dims& d, int64_t t, bool causal) { return causal ? t + (d.S - d.T) + 1 : d.S; }

// Scores -inf (so exp gives 0) for the keys in [0, end) that query t of
// batch row b may not see: padding keys (mask (B, S)) and, in packed rows,
// keys of another segment than the query's (seg (B, T), the queries'
// segments; the S - T prefix keys have none). Two plain loops, one per
// reason, that the compiler vectorises with blends.
template <class R>
void hide_keys(const Dims& d, const int32_t* mask, const int32_t* seg, int64_t b, int64_t t, int64_t end, R* sr) {
  if (mask) {
    const int32_t* m = mask + b * d.S;  // (S)
#pragma omp simd
    for (int64_t s = 0; s < end; ++s) sr[s] = m[s] == 0 ? R(-INFINITY) : sr[s];
  }
  if (seg) {
    const int32_t* g = seg + b * d.T;  // (T)
    const int64_t prefix = d.S - d.T;
    const int32_t own = g[t];
#pragma omp simd
    for (int64_t s = prefix; s < end; ++s) sr[s] = g[s - prefix] != own ? R(-INFINITY) : sr[s];
  }
}

// Heads per chunk: as many as keep one (T, S) matrix of the chunk within
// about 4 MiB (at least one head).
int64_t chunk_heads(const Dims& d, size_t elem) {
  const int64_t per_head = std::max<int64_t>(1, d.T * d.S * int64_t(elem));
  return std::clamp<int64_t>((int64_t(4) << 20) / per_head, 1, d.B * d.H);
}

// A piece of the work: heads [h0, h0 + nh), their query rows [t0, t1) and
// the keys [0, keys) that any of those queries may see. A chunk of several
// heads is one piece (every row, every key); a chunk of one head (a long
// sequence) goes in blocks of kRows queries, so that causal attention skips
// the keys no query of a block sees (about 40% of the products at T = 1024).
struct Piece {
  int64_t h0, nh, t0, t1, keys;
  int64_t rows() const { return t1 - t0; }
};
constexpr int64_t kRows = 256;

// Each head's pieces last block first: that block sees every key, so its
// products write dK and dV whole and the earlier blocks add to a prefix.
std::vector<Piece> pieces(const Dims& d, int64_t nh_max, bool causal) {
  std::vector<Piece> out;
  for (int64_t h0 = 0; h0 < d.B * d.H; h0 += nh_max) {
    const int64_t nh = std::min(nh_max, d.B * d.H - h0);
    if (nh > 1) {
      out.push_back({h0, nh, 0, d.T, d.S});
      continue;
    }
    for (int64_t t1 = d.T; t1 > 0; t1 -= kRows) {
      const int64_t t0 = std::max<int64_t>(0, t1 - kRows);
      out.push_back({h0, 1, t0, t1, causal ? std::min(d.S, t1 + d.S - d.T) : d.S});
    }
  }
  return out;
}

// Rows [r0, r1) of the piece's heads of a (B, H, N, D) tensor, as (nh, r1 - r0, D).
Tensor piece_rows(const Tensor& t, const Piece& pc, int64_t r0, int64_t r1) {
  const int64_t N = t.size(2), D = t.size(3);
  if (r0 == 0 && r1 == N) return t.view({t.size(0) * t.size(1), N, D}).narrow(0, pc.h0, pc.nh);
  return t.view({t.size(0) * t.size(1) * N, D}).narrow(0, pc.h0 * N + r0, r1 - r0).view({1, r1 - r0, D});  // nh = 1
}

// The first nh * rows * cols elements of a workspace, as (nh, rows, cols).
Tensor matrices(const Tensor& ws, const Piece& pc, int64_t cols) {
  return ws.narrow(0, 0, pc.nh * pc.rows() * cols).view({pc.nh, pc.rows(), cols});
}

// Row softmax of a piece's scores in place (nh * rows rows of `keys` each):
// P = exp(S - lse) over visible, unmasked keys, 0 elsewhere. With `save`
// (forward), computes lse and writes it there; backward reads the saved lse.
// With `dropped` (forward, or backward's F P), also writes F P.
template <class R>
void probabilities(const Dims& d, const AttentionParams& p, const int32_t* mask, const int32_t* seg, const Piece& pc,
                   R* scores, const R* lse, R* save, R* dropped) {
  const bool dropout = p.dropout > 0.f;
  const int64_t rows = pc.nh * pc.rows(), K = pc.keys;
#pragma omp parallel if (rows * K > (1 << 14))
  {
    std::vector<R> keep(dropout ? size_t(K) : size_t(0));  // (keys) one row's dropout factors
#pragma omp for schedule(static)
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t bh = pc.h0 + i / pc.rows(), t = pc.t0 + i % pc.rows(), b = bh / d.H, r = bh * d.T + t;
      const int64_t end = visible_end(d, t, p.causal);  // <= keys
      R* sr = scores + i * K;  // (keys)
      hide_keys(d, mask, seg, b, t, end, sr);
      R m = -INFINITY;  // the row's max (-inf: no visible key)
      if (save) {
        m = row_max(sr, end);
      } else {
        m = lse[r];
      }
      if (m == -INFINITY) {  // every key masked: P = 0, lse = -inf
        std::fill(sr, sr + K, R(0));
        if (save) save[r] = -INFINITY;
      } else {
        R l = 0;  // forward: the softmax denominator of exp(S - m)
#pragma omp simd reduction(+ : l)
        for (int64_t s = 0; s < end; ++s) {
          const R e = fast_exp(sr[s] - m);
          sr[s] = e;
          l += e;
        }
        if (save) {  // P = exp(S - m) / l, lse = m + log l
          const R inv = R(1) / l;
#pragma omp simd
          for (int64_t s = 0; s < end; ++s) sr[s] *= inv;
          save[r] = m + std::log(l);
        }
        std::fill(sr + end, sr + K, R(0));
      }
      if (dropped == nullptr) continue;
      R* dr = dropped + i * K;  // (keys)
      if (dropout) dropout_factors(p.seed, p.dropout, p.dropout_offset + uint64_t(r * d.S), K, keep.data());
      for (int64_t s = 0; s < K; ++s) dr[s] = dropout ? sr[s] * keep[s] : sr[s];
    }
  }
}

// Whether the products run in bf16; only f32 inputs can (f64 is for checks).
template <class R>
bool bf16_products(const AttentionParams& p) {
  if (p.compute == DType::f32) return false;
  if (p.compute != DType::bf16 || !std::is_same_v<R, float>)
    fail("attention: {} products need f32 inputs and compute f32 or bf16", dtype_name(p.compute));
  return true;
}

// One of the kernel's products: in a dry run, only the workspace the CPU's
// holds for it (the meta backend's matmul).
void product(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out, float alpha, float beta) {
  if (dry_run(a)) backend(kMeta).matmul(a, trans_a, b, trans_b, out, alpha, beta);
  else matmul(a, trans_a, b, trans_b, out, alpha, beta);
}

// A chunk's (nh_max * T * S) matrix of dt in workspace, on the inputs' device.
Tensor chunk_matrix(const Dims& d, int64_t nh_max, DType dt, Device device) {
  return workspace({nh_max * d.T * d.S}, dt, device);
}

// A GEMM operand: t itself, or its bf16 copy in workspace.
Tensor gemm_operand(const Tensor& t, bool bf16) {
  if (!bf16) return t;
  Tensor c = workspace(t.shape(), DType::bf16, t.device());
  if (!dry_run(t)) copy(t, c);
  return c;
}

// A piece's (nh, rows, keys) matrix as a GEMM operand: m itself, or (with
// bf16 products) its copy in the chunk's bf16 workspace PB.
Tensor matrix_operand(const Tensor& m, const Tensor& PB, const Piece& pc) {
  if (!PB.defined()) return m;
  Tensor b = matrices(PB, pc, pc.keys);
  if (!dry_run(m)) copy(m, b);
  return b;
}

template <class R>
void forward(const Dims& d, const Tensor& q, const Tensor& k, const Tensor& v, const int32_t* mask,
             const int32_t* seg, const AttentionParams& p, const Tensor& out, R* lse) {
  const int64_t nh_max = chunk_heads(d, sizeof(R));
  const bool dropout = p.dropout > 0.f, bf16 = bf16_products<R>(p), dry = dry_run(q);
  const Device dev = q.device();
  Tensor S = chunk_matrix(d, nh_max, q.dtype(), dev);                         // scores, then probabilities
  Tensor FP = dropout ? chunk_matrix(d, nh_max, q.dtype(), dev) : Tensor();  // F P
  Tensor PB = bf16 ? chunk_matrix(d, nh_max, DType::bf16, dev) : Tensor();   // [F] P in bf16
  Tensor qg = gemm_operand(q, bf16), kg = gemm_operand(k, bf16), vg = gemm_operand(v, bf16);
  for (const Piece& pc : pieces(d, nh_max, p.causal)) {
    Tensor s = matrices(S, pc, pc.keys);  // (nh, rows, keys)
    Tensor fp = dropout ? matrices(FP, pc, pc.keys) : Tensor();
    product(piece_rows(qg, pc, pc.t0, pc.t1), false, piece_rows(kg, pc, 0, pc.keys), true, s, float(p.scale), 0.f);
    if (!dry) probabilities<R>(d, p, mask, seg, pc, s.data<R>(), lse, lse, dropout ? fp.data<R>() : nullptr);
    Tensor pv = matrix_operand(dropout ? fp : s, PB, pc);  // (nh, rows, keys) [F] P
    product(pv, false, piece_rows(vg, pc, 0, pc.keys), false, piece_rows(out, pc, pc.t0, pc.t1), 1.f, 0.f);  // O = [F] P V
  }
}

// dS = scale * P (F dP - D) in place of a piece's dP (nh, rows, keys), with
// D_t = dO_t . O_t and F the dropout factors (none without dropout).
template <class R>
void score_gradients(const Dims& d, const AttentionParams& p, const Piece& pc, const Tensor& out, const Tensor& gout,
                     const Tensor& P, const Tensor& dP) {
  const bool dropout = p.dropout > 0.f;
  const R scale = R(p.scale);
  const int64_t rows = pc.nh * pc.rows(), K = pc.keys;
  const R* o = piece_rows(out, pc, pc.t0, pc.t1).data<R>();
  const R* g = piece_rows(gout, pc, pc.t0, pc.t1).data<R>();
  const R* pp = P.data<R>();
  R* ds = dP.data<R>();
#pragma omp parallel if (rows * K > (1 << 14))
  {
    std::vector<R> keep(dropout ? size_t(K) : size_t(0));  // (keys)
#pragma omp for schedule(static)
    for (int64_t i = 0; i < rows; ++i) {
      R dt = 0;
      for (int64_t j = 0; j < d.D; ++j) dt += g[i * d.D + j] * o[i * d.D + j];
      const int64_t r = (pc.h0 + i / pc.rows()) * d.T + pc.t0 + i % pc.rows();
      if (dropout) dropout_factors(p.seed, p.dropout, p.dropout_offset + uint64_t(r * d.S), K, keep.data());
      R* dsr = ds + i * K;        // (keys) dP, then dS
      const R* pr = pp + i * K;  // (keys)
      if (dropout) {
        for (int64_t s = 0; s < K; ++s) dsr[s] = scale * pr[s] * (keep[s] * dsr[s] - dt);
      } else {
#pragma omp simd
        for (int64_t s = 0; s < K; ++s) dsr[s] = scale * pr[s] * (dsr[s] - dt);
      }
    }
  }
}

template <class R>
void backward(const Dims& d, const Tensor& q, const Tensor& k, const Tensor& v, const int32_t* mask,
              const int32_t* seg, const Tensor& out, const R* lse, const Tensor& gout, const AttentionParams& p,
              const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  const int64_t nh_max = chunk_heads(d, sizeof(R));
  const bool dropout = p.dropout > 0.f, bf16 = bf16_products<R>(p), dry = dry_run(q);
  const Device dev = q.device();
  Tensor P = chunk_matrix(d, nh_max, q.dtype(), dev);
  Tensor dP = chunk_matrix(d, nh_max, q.dtype(), dev);  // dP, then dS
  Tensor FP = dropout && gv.defined() ? chunk_matrix(d, nh_max, q.dtype(), dev) : Tensor();
  Tensor PB = bf16 ? chunk_matrix(d, nh_max, DType::bf16, dev) : Tensor();  // [F] P, then dS, in bf16
  Tensor qg = gemm_operand(q, bf16), kg = gemm_operand(k, bf16), vg = gemm_operand(v, bf16);
  Tensor gg = gemm_operand(gout, bf16);
  for (const Piece& pc : pieces(d, nh_max, p.causal)) {
    const int64_t K = pc.keys;
    const float beta = pc.t1 == d.T ? 0.f : 1.f;  // a head's first piece writes dK, dV; the others add
    Tensor p_ = matrices(P, pc, K), dp = matrices(dP, pc, K), fp = FP.defined() ? matrices(FP, pc, K) : Tensor();
    Tensor qb = piece_rows(qg, pc, pc.t0, pc.t1), gb = piece_rows(gg, pc, pc.t0, pc.t1);  // (nh, rows, D)
    Tensor kk = piece_rows(kg, pc, 0, K), vk = piece_rows(vg, pc, 0, K);                  // (nh, keys, D)
    product(qb, false, kk, true, p_, float(p.scale), 0.f);  // scores again
    if (!dry) probabilities<R>(d, p, mask, seg, pc, p_.data<R>(), lse, nullptr, fp.defined() ? fp.data<R>() : nullptr);
    if (gv.defined()) {  // dV += (F P)^T dO
      Tensor pv = matrix_operand(fp.defined() ? fp : p_, PB, pc);
      product(pv, true, gb, false, piece_rows(gv, pc, 0, K), 1.f, beta);
    }
    if (!gq.defined() && !gk.defined()) continue;
    product(gb, false, vk, true, dp, 1.f, 0.f);  // dP = dO V^T
    if (!dry) score_gradients<R>(d, p, pc, out, gout, p_, dp);  // dp: dP, then dS
    Tensor dS = matrix_operand(dp, PB, pc);  // (nh, rows, keys)
    if (gq.defined()) product(dS, false, kk, false, piece_rows(gq, pc, pc.t0, pc.t1), 1.f, 0.f);  // dQ = dS K
    if (gk.defined()) product(dS, true, qb, false, piece_rows(gk, pc, 0, K), 1.f, beta);           // dK += dS^T Q
  }
}

}  // namespace

void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p, const Tensor& out,
               const Tensor& lse) {
  const Dims d = check("attention", q, k, v, p);
  check_like("attention", "out", out, q.shape(), q.dtype());
  check_like("attention", "lse", lse, {d.B, d.H, d.T}, q.dtype());
  const int32_t* mask = p.key_mask ? p.key_mask->data<int32_t>() : nullptr;
  const int32_t* seg = p.segment_ids ? p.segment_ids->data<int32_t>() : nullptr;
  visit_float(q.dtype(), "attention", [&]<class R>() { forward<R>(d, q, k, v, mask, seg, p, out, lse.data<R>()); });
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& gout, const AttentionParams& p, const Tensor& gq, const Tensor& gk,
                        const Tensor& gv) {
  const Dims d = check("attention_backward", q, k, v, p);
  check_like("attention_backward", "out", out, q.shape(), q.dtype());
  check_like("attention_backward", "gout", gout, q.shape(), q.dtype());
  check_like("attention_backward", "lse", lse, {d.B, d.H, d.T}, q.dtype());
  check_like("attention_backward", "gq", gq, q.shape(), q.dtype());
  check_like("attention_backward", "gk", gk, k.shape(), q.dtype());
  check_like("attention_backward", "gv", gv, v.shape(), q.dtype());
  const int32_t* mask = p.key_mask ? p.key_mask->data<int32_t>() : nullptr;
  const int32_t* seg = p.segment_ids ? p.segment_ids->data<int32_t>() : nullptr;
  visit_float(q.dtype(), "attention_backward", [&]<class R>() {
    backward<R>(d, q, k, v, mask, seg, out, lse.data<R>(), gout, p, gq, gk, gv);
  });
}

}  // namespace mp::cpu
