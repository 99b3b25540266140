// NF4 on the CPU (the layout is in engine/nf4.h): quantize and dequantize as
// bitsandbytes 0.50 does on the CPU, bit for bit, and the product with an
// NF4 weight, one panel of its rows dequantized into workspace at a time and
// handed to the engine's GEMM (matmul.cpp): f32 panels for an f32 input,
// bf16 panels for a bf16 input (mixed precision) where the CPU multiplies
// bf16 natively; elsewhere a bf16 input is widened to f32 first.
#include <algorithm>
#include <cmath>

#include "engine/cpu/kernels.h"
#include "engine/cpu/nf4_code_lut.h"

namespace mp::cpu {

namespace {

// The 4-bit codes as bitsandbytes 0.50 computes them on the CPU (torch ops):
// for each block of 64, absmax = max |x|; a full block is scaled by
// x * (1 / absmax), the last, partial one by x / absmax (absmax at least
// 1e-38); clamped to [-1, 1]; the index of the nearest NF4 value, where a
// value exactly halfway between two goes to the lower one (torch.bucketize
// on the midpoints: the code is the number of midpoints below the value).
// Packed two per byte, the first in the high nibble; an odd count pads the
// last low nibble with 7, NF4's 0.
void quantize_nf4_blocks(const float* x, int64_t n, float* absmax, uint8_t* packed) {
  const auto& code = nf4_code();
  std::array<float, 15> mid;
  for (size_t i = 0; i < mid.size(); ++i) mid[i] = (code[i] + code[i + 1]) / 2.f;
  const int64_t blocks = nf4_blocks(n), full = n / kNf4Block;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t b = 0; b < blocks; ++b) {
    const float* xb = x + b * kNf4Block;
    const int64_t len = std::min(kNf4Block, n - b * kNf4Block);
    float m = 0.f;
    for (int64_t i = 0; i < len; ++i) m = std::max(m, std::fabs(xb[i]));
    absmax[b] = m;
    const float safe = std::max(m, 1e-38f), inv = 1.f / safe;
    const bool partial = b >= full;
    std::array<uint8_t, kNf4Block> c;
    c.fill(7);  // what is not written: the padding nibble of an odd count
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      const float v = std::clamp(partial ? xb[i] / safe : xb[i] * inv, -1.f, 1.f);
      int k = 0;
      for (float mp : mid) k += mp < v;
      c[size_t(i)] = uint8_t(k);
    }
    for (int64_t i = 0; i < len; i += 2)
      packed[(b * kNf4Block + i) / 2] = uint8_t(c[size_t(i)] << 4 | c[size_t(i + 1)]);
  }
}

// The 8-bit absmax codes as bitsandbytes' native CPU kernel (quantize_cpu)
// computes them: per group of 256, v = x * (1 / max |x|) and the code its
// 65536-bin table gives v (nf4_code_lut.h); a group of zeros gets code 0.
void quantize_absmax_groups(const float* x, int64_t n, uint8_t* q, float* nested) {
  static const CodeLut lut(nf4_dynamic_code());
  for (int64_t g = 0; g * kNf4Group < n; ++g) {
    const int64_t i0 = g * kNf4Group, i1 = std::min(n, i0 + kNf4Group);
    float m = 0.f;
    for (int64_t i = i0; i < i1; ++i) m = std::max(m, std::fabs(x[i]));
    nested[g] = m;
    const float inv = 1.f / m;
    for (int64_t i = i0; i < i1; ++i) q[i] = m == 0.f ? 0 : lut.code_of(x[i] * inv);
  }
}

// The f32 absmax of block b: dynamic[q] * nested + offset, the product
// rounded before the sum (two f32 operations, as bitsandbytes does them).
float block_scale(const Nf4Tensor& w, int64_t b) {
  const uint8_t q = w.absmax.data<uint8_t>()[b];
  volatile float product = nf4_dynamic_code()[q] * w.nested_absmax.data<float>()[b / kNf4Group];  // never fused
  return product + w.offset;
}

// Each byte's two values (high nibble first) from the NF4 code: one 8-byte
// load per byte instead of two shifts and two lookups.
struct PairTable {
  std::array<std::array<float, 2>, 256> v;
  PairTable() {
    for (int b = 0; b < 256; ++b) v[size_t(b)] = {nf4_code()[size_t(b >> 4)], nf4_code()[size_t(b & 15)]};
  }
};

// Values [begin, end) of w, in row-major order, into out[0 .. end - begin)
// (f32, or bf16 rounded from the f32 value).
inline void store(float* o, float v) { *o = v; }
inline void store(bf16* o, float v) { *o = float_to_bf16(v); }

template <class Out>
void dequantize_range(const Nf4Tensor& w, int64_t begin, int64_t end, Out* out) {
  static const PairTable pairs;
  const uint8_t* packed = w.packed.data<uint8_t>();
  const auto& code = nf4_code();
  const int64_t b0 = begin / kNf4Block, b1 = (end + kNf4Block - 1) / kNf4Block;
#pragma omp parallel for schedule(static) if (end - begin > (1 << 15))
  for (int64_t b = b0; b < b1; ++b) {
    const float s = block_scale(w, b);
    const int64_t i0 = std::max(begin, b * kNf4Block), i1 = std::min(end, (b + 1) * kNf4Block);
    Out* o = out + (i0 - begin);
    if (i0 % 2 == 0 && i1 - i0 == kNf4Block) {  // a whole block: 32 bytes, two values each
      const uint8_t* p = packed + i0 / 2;
#pragma omp simd
      for (int64_t j = 0; j < kNf4Block / 2; ++j) {
        store(o + 2 * j, pairs.v[p[j]][0] * s);
        store(o + 2 * j + 1, pairs.v[p[j]][1] * s);
      }
    } else {
      for (int64_t i = i0; i < i1; ++i) {
        const uint8_t byte = packed[i / 2];
        store(o + (i - i0), code[size_t(i % 2 ? byte & 15 : byte >> 4)] * s);
      }
    }
  }
}

}  // namespace

void nf4_quantize(const Tensor& w, Nf4Tensor& q) {
  const int64_t n = w.numel(), blocks = nf4_blocks(n);
  uint8_t* packed = q.packed.data<uint8_t>();
  Tensor absmax = workspace({blocks}, DType::f32, w.device());  // (blocks) f32, before the nested quantization
  float* a = absmax.data<float>();
  quantize_nf4_blocks(w.data<float>(), n, a, packed);

  // Double quantization: the mean absmax off, then 8 bits per block against
  // the dynamic code in groups of 256.
  double sum = 0;
  for (int64_t b = 0; b < blocks; ++b) sum += a[b];
  q.offset = float(sum / double(blocks));
  for (int64_t b = 0; b < blocks; ++b) a[b] -= q.offset;
  quantize_absmax_groups(a, blocks, q.absmax.data<uint8_t>(), q.nested_absmax.data<float>());
}

void nf4_dequantize(const Nf4Tensor& q, const Tensor& out) {
  dequantize_range(q, 0, q.numel(), out.data<float>());
}

namespace {

// How nf4_matmul runs a call: the dtype of its panels and GEMMs, and the
// GEMM of each panel of r rows starting at row r0.
struct Nf4Plan {
  int64_t O, K, N, nb;  // W (O, K), x (N, K or O), panels of nb rows
  bool transpose_w;
  DType dt;             // of the panels and of x as multiplied
  bool widen_x;         // x is bf16 but the CPU has no bf16 products

  Nf4Plan(const Tensor& x, const Nf4Tensor& w, bool transpose)
      : O(w.shape[0]), K(w.shape[1]), N(x.size(0)), nb(weight_block_width(K, O)), transpose_w(transpose) {
    const bool bf16_x = x.dtype() == DType::bf16;
    dt = bf16_x && bf16_gemm_native() ? DType::bf16 : DType::f32;
    widen_x = bf16_x && dt == DType::f32;
  }
  //   transpose_w: out[:, r0:r0+r] (N, r) = x (N, K) P^T
  //   otherwise:   out (N, K) += x[:, r0:r0+r] (N, r) P     (= on the first panel)
  GemmShape panel(int64_t r0) const {
    const int64_t r = std::min(nb, O - r0);
    if (transpose_w) return {dt, false, true, 1, N, r, K, 1, 1, 1.f, 0.f, K, K, O};
    return {dt, false, false, 1, N, K, r, 1, 1, 1.f, r0 == 0 ? 0.f : 1.f, O, K, K};
  }
};

}  // namespace

// W (O, K), one panel of rows r0 .. r0 + r at a time as P (r, K). A dry run
// (meta tensors, kernels.h) holds each panel's GEMM scratchpad in turn as
// gemm_2d does.
void nf4_matmul(const Tensor& x, const Nf4Tensor& w, bool transpose_w, const Tensor& out) {
  const Nf4Plan p(x, w, transpose_w);
  const bool dry = dry_run(x);
  if (p.O == 0 || p.K == 0) {
    if (!dry) fill(out, 0.0);
    return;
  }
  Tensor x32 = p.widen_x ? workspace(x.shape(), DType::f32, x.device()) : Tensor();  // (N, K or O) f32
  if (p.widen_x && !dry) copy(x, x32);
  const Tensor& xs = p.widen_x ? x32 : x;
  Tensor ws = workspace({p.nb * p.K}, p.dt, x.device());  // (nb, K)
  const size_t elem = dtype_size(p.dt);
  for (int64_t r0 = 0; r0 < p.O; r0 += p.nb) {
    if (dry) {
      if (const int64_t n = gemm_2d_workspace_elements(p.panel(r0))) workspace({n}, DType::f32, kMeta);
      continue;
    }
    const int64_t r = std::min(p.nb, p.O - r0);
    if (p.dt == DType::bf16) dequantize_range(w, r0 * p.K, (r0 + r) * p.K, ws.data<bf16>());
    else dequantize_range(w, r0 * p.K, (r0 + r) * p.K, ws.data<float>());
    const char* X = static_cast<const char*>(xs.raw()) + (transpose_w ? 0 : r0 * int64_t(elem));
    float* Y = out.data<float>() + (transpose_w ? r0 : 0);
    gemm_2d(p.panel(r0), X, ws.raw(), Y, x.device());
  }
}

}  // namespace mp::cpu
