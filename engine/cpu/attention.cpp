// Fused scaled-dot-product attention, forward and backward, one query row at
// a time (flash-attention style: the (T, S) score matrix is never stored).
//
// Shapes: q (B, H, T, D), k and v (B, H, S, D) with S >= T, out (B, H, T, D),
// lse (B, H, T). The first S - T keys are a prefix (prefix tuning, or a KV
// cache) that every query sees; with `causal`, query t sees keys s <= t + S - T.
// key_mask (B, S) i32 masks keys whose entry is 0 (padding). segment_ids
// (B, T) i32 (packed rows) hide from query t the sequence's keys of other
// segments; prefix keys stay visible.
//
// Forward, per query row q_t:
//   score_s = scale * q_t . k_s          for each visible, unmasked key s
//   lse_t   = log sum_s exp(score_s)
//   out_t   = sum_s exp(score_s - lse_t) v_s
// A row with no visible key gets out_t = 0 and lse_t = -inf (not NaN).
//
// Backward (the standard flash-attention backward), with P_ts = exp(score_ts - lse_t)
// recomputed from the saved lse:
//   D_t   = dO_t . O_t
//   dV_s += P_ts dO_t
//   dP_ts = dO_t . v_s,   dS_ts = P_ts (dP_ts - D_t)
//   dQ_t += scale dS_ts k_s,   dK_s += scale dS_ts q_t
//
// With dropout p, out_t = sum_s F_ts P_ts v_s where F_ts = keep_ts / (1 - p)
// is redrawn from Philox (lse stays the undropped softmax's). Then dV_s uses
// F_ts P_ts, dP_ts becomes F_ts (dO_t . v_s), and D_t = dO_t . O_t still holds.
#include <cmath>
#include <vector>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/fast_math.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/philox.h"

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

template <class R>
R dot(const R* a, const R* b, int64_t n) {
  R s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// scores[s] = scale * (q . k_s) for keys s in [0, end), k (S, D) row-major.
// Four keys at a time, so four independent sums are in flight (a single dot
// product is a chain of dependent adds).
template <class R>
void row_scores(const R* q, const R* k, int64_t end, int64_t D, R scale, R* scores) {
  int64_t s = 0;
  for (; s + 4 <= end; s += 4) {
    const R* k0 = k + s * D;
    const R *k1 = k0 + D, *k2 = k1 + D, *k3 = k2 + D;
    R a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
    for (int64_t i = 0; i < D; ++i) {
      a0 += q[i] * k0[i];
      a1 += q[i] * k1[i];
      a2 += q[i] * k2[i];
      a3 += q[i] * k3[i];
    }
    scores[s] = scale * a0;
    scores[s + 1] = scale * a1;
    scores[s + 2] = scale * a2;
    scores[s + 3] = scale * a3;
  }
  for (; s < end; ++s) scores[s] = scale * dot(q, k + s * D, D);
}

// acc (D) += sum over s in [0, end) of w[s] * rows[s] (rows (S, D)), skipping
// zero weights; four rows per pass, so acc is loaded and stored a quarter as often.
template <class R>
void weighted_row_sum(const R* w, const R* rows, int64_t end, int64_t D, R* acc) {
  int64_t s = 0;
  for (; s + 4 <= end; s += 4) {
    const R w0 = w[s], w1 = w[s + 1], w2 = w[s + 2], w3 = w[s + 3];
    if (w0 == R(0) && w1 == R(0) && w2 == R(0) && w3 == R(0)) continue;
    const R* r0 = rows + s * D;
    const R *r1 = r0 + D, *r2 = r1 + D, *r3 = r2 + D;
#pragma omp simd
    for (int64_t i = 0; i < D; ++i) acc[i] += w0 * r0[i] + w1 * r1[i] + w2 * r2[i] + w3 * r3[i];
  }
  for (; s < end; ++s) {
    if (w[s] == R(0)) continue;
    const R* r0 = rows + s * D;
#pragma omp simd
    for (int64_t i = 0; i < D; ++i) acc[i] += w[s] * r0[i];
  }
}

// Attention dropout's factors for query row r (of B*H*T rows): f[s] = 1 / (1 - p)
// if the Philox draw of element offset + r*S + s of the (B, H, T, S) probabilities
// is >= p, else 0, for s in [0, end): the mask ops::dropout would draw.
template <class R>
void dropout_factors(uint64_t seed, float p, uint64_t offset, int64_t r, int64_t S, int64_t end, R* f) {
  const R scale = R(1) / (R(1) - R(p));
  const uint64_t first = offset + uint64_t(r * S);
  for (int64_t s = 0; s < end;) {
    const uint64_t i = first + uint64_t(s);
    const philox::U32x4 draws = philox::block(seed, i / 4);
    for (uint64_t lane = i % 4; lane < 4 && s < end; ++lane, ++s)
      f[s] = philox::dropout_keeps(draws.v[lane], p) ? scale : R(0);
  }
}

// The end of the keys query t may see, [0, end): all S without `causal`;
// masked keys inside it are skipped by the caller (their score is -inf).
inline int64_t visible_end(const Dims& d, int64_t t, bool causal) { return causal ? t + (d.S - d.T) + 1 : d.S; }

// The keys a query may not see inside [0, end): padding keys (mask, (S)) and,
// in packed rows, keys of another segment than the query's (seg (T), the
// queries' segments; the S - T prefix keys have none).
struct Hidden {
  const int32_t* mask;  // (S) of this batch row, or nullptr
  const int32_t* seg;   // (T) of this batch row, or nullptr
  int64_t prefix;       // S - T
  int32_t own;          // the query's segment
  bool operator()(int64_t s) const {
    return (mask && mask[s] == 0) || (seg && s >= prefix && seg[s - prefix] != own);
  }
};
inline Hidden hidden_keys(const Dims& d, const int32_t* mask, const int32_t* seg, int64_t b, int64_t t) {
  const int32_t* sb = seg ? seg + b * d.T : nullptr;
  return {mask ? mask + b * d.S : nullptr, sb, d.S - d.T, sb ? sb[t] : 0};
}

template <class R>
void forward(const Dims& d, const R* q, const R* k, const R* v, const int32_t* mask, const int32_t* seg,
             const AttentionParams& p, R* out, R* lse) {
  const int64_t rows = d.B * d.H * d.T;
  const R scale = R(p.scale);
  const bool causal = p.causal, dropout = p.dropout > 0.f;
#pragma omp parallel if (rows * d.S * d.D > (1 << 15))
  {
    std::vector<R> score(size_t(d.S));                     // (S) this thread's scores for one query
    std::vector<R> keep(dropout ? size_t(d.S) : size_t(0));  // (S) its dropout factors
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t bh = r / d.T, t = r % d.T, b = bh / d.H;
      const R* qt = q + r * d.D;            // (D)
      const R* kb = k + bh * d.S * d.D;     // (S, D)
      const R* vb = v + bh * d.S * d.D;     // (S, D)
      const Hidden hidden = hidden_keys(d, mask, seg, b, t);
      R* ot = out + r * d.D;                // (D)
      const int64_t end = visible_end(d, t, causal);

      row_scores(qt, kb, end, d.D, scale, score.data());
      R m = -INFINITY;
      for (int64_t s = 0; s < end; ++s) {
        if (hidden(s)) score[s] = -INFINITY;  // padding key, or another example's
        m = std::max(m, score[s]);
      }
      for (int64_t i = 0; i < d.D; ++i) ot[i] = 0;
      if (m == -INFINITY) {  // every key masked: zeros, not NaN
        lse[r] = -INFINITY;
        continue;
      }
      R l = 0;  // softmax denominator; masked scores are -inf and give exp = 0
#pragma omp simd reduction(+ : l)
      for (int64_t s = 0; s < end; ++s) {
        const R e = fast_exp(score[s] - m);
        score[s] = e;
        l += e;
      }
      if (dropout) {
        dropout_factors(p.seed, p.dropout, p.dropout_offset, r, d.S, end, keep.data());
        for (int64_t s = 0; s < end; ++s) score[s] *= keep[s];
      }
      weighted_row_sum(score.data(), vb, end, d.D, ot);  // out_t = sum_s [F_s] e_s v_s, normalised below
      const R inv = R(1) / l;
      for (int64_t i = 0; i < d.D; ++i) ot[i] *= inv;
      lse[r] = m + std::log(l);
    }
  }
}

// Parallel over (b, h): dK and dV of one head collect from all its queries.
// Queries go in blocks of kQ: their P and dS rows are computed first, then
// each key's dK and dV rows are updated once per block instead of once per query.
template <class R>
void backward(const Dims& d, const R* q, const R* k, const R* v, const int32_t* mask, const int32_t* seg, const R* out,
              const R* lse, const R* gout, const AttentionParams& p, R* gq, R* gk, R* gv) {
  constexpr int64_t kQ = 4;
  const int64_t heads = d.B * d.H;
  const R scale = R(p.scale);
  const bool causal = p.causal, dropout = p.dropout > 0.f;
#pragma omp parallel if (heads * d.T * d.S * d.D > (1 << 15))
  {
    std::vector<R> P(size_t(kQ * d.S)), dS(size_t(kQ * d.S));  // (kQ, S) probabilities and dS of a query block
    std::vector<R> keep(dropout ? size_t(d.S) : size_t(0));    // (S) one query's dropout factors
#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < heads; ++bh) {
      const int64_t b = bh / d.H;
      const R* kb = k + bh * d.S * d.D;             // (S, D)
      const R* vb = v + bh * d.S * d.D;             // (S, D)
      R* gkb = gk ? gk + bh * d.S * d.D : nullptr;  // (S, D)
      R* gvb = gv ? gv + bh * d.S * d.D : nullptr;  // (S, D)
      if (gkb) std::fill(gkb, gkb + d.S * d.D, R(0));
      if (gvb) std::fill(gvb, gvb + d.S * d.D, R(0));
      for (int64_t t0 = 0; t0 < d.T; t0 += kQ) {
        const int64_t nq = std::min(kQ, d.T - t0);
        const int64_t block_end = visible_end(d, t0 + nq - 1, causal);  // keys any query of the block sees
        for (int64_t j = 0; j < kQ; ++j) {
          R* pj = P.data() + j * d.S;    // (S)
          R* dsj = dS.data() + j * d.S;  // (S)
          const int64_t t = t0 + j, r = bh * d.T + t;
          if (j >= nq || lse[r] == -INFINITY) {  // no such query, or no visible key: no gradient
            std::fill(pj, pj + block_end, R(0));
            std::fill(dsj, dsj + block_end, R(0));
            if (j < nq && gq) std::fill(gq + r * d.D, gq + (r + 1) * d.D, R(0));
            continue;
          }
          const R* qt = q + r * d.D;      // (D)
          const R* got = gout + r * d.D;  // (D)
          const R Dt = dot(got, out + r * d.D, d.D);
          const int64_t end = visible_end(d, t, causal);
          const Hidden hidden = hidden_keys(d, mask, seg, b, t);
          row_scores(qt, kb, end, d.D, scale, pj);  // scores, turned into P below
          row_scores(got, vb, end, d.D, R(1), dsj);  // dP_s = dO_t . v_s, turned into dS below
          const R l = lse[r];
          if (dropout) {  // P F for dV; dS = P (F dP - D)
            dropout_factors(p.seed, p.dropout, p.dropout_offset, r, d.S, end, keep.data());
            for (int64_t s = 0; s < end; ++s) {
              const R ps = hidden(s) ? R(0) : fast_exp(pj[s] - l);
              pj[s] = ps * keep[s];
              dsj[s] = scale * ps * (keep[s] * dsj[s] - Dt);
            }
          } else {
#pragma omp simd
            for (int64_t s = 0; s < end; ++s) {
              const R ps = hidden(s) ? R(0) : fast_exp(pj[s] - l);
              pj[s] = ps;
              dsj[s] = scale * ps * (dsj[s] - Dt);  // dS, with scale folded in: d score / d (q . k)
            }
          }
          std::fill(pj + end, pj + block_end, R(0));
          std::fill(dsj + end, dsj + block_end, R(0));
          if (gq) {
            R* gqt = gq + r * d.D;  // (D)
            std::fill(gqt, gqt + d.D, R(0));
            weighted_row_sum(dsj, kb, end, d.D, gqt);  // dQ_t = sum_s dS_ts k_s
          }
        }
        // dV_s += sum_j P_js dO_j,  dK_s += sum_j dS_js q_j  over the block's queries.
        const R* q0 = q + (bh * d.T + t0) * d.D;     // (nq, D)
        const R* g0 = gout + (bh * d.T + t0) * d.D;  // (nq, D)
        const R* row1 = nq > 1 ? g0 + d.D : g0;  // rows past nq have weight 0; any valid pointer will do
        const R* row2 = nq > 2 ? g0 + 2 * d.D : g0;
        const R* row3 = nq > 3 ? g0 + 3 * d.D : g0;
        const R* qr1 = nq > 1 ? q0 + d.D : q0;
        const R* qr2 = nq > 2 ? q0 + 2 * d.D : q0;
        const R* qr3 = nq > 3 ? q0 + 3 * d.D : q0;
        for (int64_t s = 0; s < block_end; ++s) {
          const R p0 = P[s], p1 = P[d.S + s], p2 = P[2 * d.S + s], p3 = P[3 * d.S + s];
          const R s0 = dS[s], s1 = dS[d.S + s], s2 = dS[2 * d.S + s], s3 = dS[3 * d.S + s];
          if (gvb && (p0 != R(0) || p1 != R(0) || p2 != R(0) || p3 != R(0))) {
            R* gvs = gvb + s * d.D;
#pragma omp simd
            for (int64_t i = 0; i < d.D; ++i) gvs[i] += p0 * g0[i] + p1 * row1[i] + p2 * row2[i] + p3 * row3[i];
          }
          if (gkb && (s0 != R(0) || s1 != R(0) || s2 != R(0) || s3 != R(0))) {
            R* gks = gkb + s * d.D;
#pragma omp simd
            for (int64_t i = 0; i < d.D; ++i) gks[i] += s0 * q0[i] + s1 * qr1[i] + s2 * qr2[i] + s3 * qr3[i];
          }
        }
      }
    }
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
  visit_float(q.dtype(), "attention", [&]<class R>() {
    forward<R>(d, q.data<R>(), k.data<R>(), v.data<R>(), mask, seg, p, out.data<R>(), lse.data<R>());
  });
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
    backward<R>(d, q.data<R>(), k.data<R>(), v.data<R>(), mask, seg, out.data<R>(), lse.data<R>(), gout.data<R>(), p,
                gq.defined() ? gq.data<R>() : nullptr, gk.defined() ? gk.data<R>() : nullptr,
                gv.defined() ? gv.data<R>() : nullptr);
  });
}

}  // namespace mp::cpu
