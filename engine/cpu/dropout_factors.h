// Dropout's keep factors for a run of elements of one Philox stream: the one
// mask rule (philox::dropout_keeps) for ops::dropout and the fused
// attention's dropout on the CPU. Element e of the stream is lane e % 4 of
// block e / 4 (philox.h), whatever the run's bounds.
//
// The generator makes up to 16 blocks (64 elements) at a time. With AVX-512
// they are one register per word of the counter: a Philox round's 32 x 32 ->
// 64 bit products come from vpmuludq, which multiplies the even 32-bit
// lanes, so the odd lanes are shifted down, multiplied, and the halves
// blended back (gcc does not vectorise the scalar round's widening
// multiply). A 4 x 16 transpose then puts the draws in element order. With
// AVX2 the same rounds run on 8 blocks per register, as many groups of 8 as
// the run needs (a 20-key attention row needs 5 blocks), and the words are
// scattered into element order. Elsewhere the blocks are made one by one
// with philox::block.
#pragma once
#include <algorithm>
#include <cstdint>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "engine/cpu/avx512.h"
#include "engine/cpu/philox.h"

namespace mp::cpu {

MP_AVX512_BEGIN
#if defined(__AVX512F__) || defined(__AVX2__)
// One register holds one word of the counters of Lanes::n blocks (16 with
// AVX-512, 8 with AVX2), and these are the operations a round needs.
struct Lanes {
#if defined(__AVX512F__)
  using V = __m512i;
  static constexpr int n = 16;
  static V load(const uint32_t* p) { return _mm512_load_si512(p); }
  static V zero() { return _mm512_setzero_si512(); }
  // The 64-bit products of every 32-bit lane of c with m: their high and low words.
  static void mul(V c, uint32_t m, V& high, V& low) {
    const V mm = _mm512_set1_epi64(m);
    const V even = _mm512_mul_epu32(c, mm);                        // lanes 0, 2, ...: 64-bit products
    const V odd = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), mm);  // lanes 1, 3, ...
    high = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
    low = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  }
  static V xor3(V a, V b, uint32_t k) { return _mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_set1_epi32(int(k))); }
#else
  using V = __m256i;
  static constexpr int n = 8;
  static V load(const uint32_t* p) { return _mm256_load_si256(reinterpret_cast<const V*>(p)); }
  static V zero() { return _mm256_setzero_si256(); }
  static void mul(V c, uint32_t m, V& high, V& low) {  // as above
    const V mm = _mm256_set1_epi64x(m);
    const V even = _mm256_mul_epu32(c, mm);
    const V odd = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), mm);
    high = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
    low = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  }
  static V xor3(V a, V b, uint32_t k) { return _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_set1_epi32(int(k))); }
#endif
};

// Philox4x32-10 (philox.h) on blocks first .. first + Lanes::n - 1 of stream
// `seed`: c[l] holds word l of every block's output.
inline void lane_blocks(uint64_t seed, uint64_t first, Lanes::V (&c)[4]) {
  alignas(64) uint32_t lo[Lanes::n], hi[Lanes::n];  // each block's counter: its index's low and high words
  for (int j = 0; j < Lanes::n; ++j) {
    lo[j] = uint32_t(first + uint64_t(j));
    hi[j] = uint32_t((first + uint64_t(j)) >> 32);
  }
  c[0] = Lanes::load(lo);
  c[1] = Lanes::load(hi);
  c[2] = c[3] = Lanes::zero();
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += philox::kW0;
      k1 += philox::kW1;
    }
    Lanes::V hi0, lo0, hi1, lo1;
    Lanes::mul(c[0], philox::kM0, hi0, lo0);
    Lanes::mul(c[2], philox::kM1, hi1, lo1);
    c[0] = Lanes::xor3(hi1, c[1], k0);
    c[1] = lo1;
    c[2] = Lanes::xor3(hi0, c[3], k1);
    c[3] = lo0;
  }
}
#endif

// The draws of elements 4 first .. 4 first + 63 of stream `seed`, in order:
// draws[4 j + l] = lane l of block first + j, for (at least) the first
// `blocks` (1 to 16) blocks; the rest of draws may be left unwritten
// (AVX-512 makes all 16 in one go).
inline void sixteen_blocks(uint64_t seed, uint64_t first, [[maybe_unused]] int blocks, uint32_t (&draws)[64]) {
#if defined(__AVX512F__)
  __m512i c[4];
  lane_blocks(seed, first, c);
  // c[l] holds word l of blocks 0..15. Transpose 4 x 4 inside each 128-bit
  // lane k (u_i: block 4k + i), then the 128-bit lanes, so that register k
  // holds blocks 4k .. 4k + 3, word by word.
  const __m512i t0 = _mm512_unpacklo_epi32(c[0], c[1]), t1 = _mm512_unpacklo_epi32(c[2], c[3]);
  const __m512i t2 = _mm512_unpackhi_epi32(c[0], c[1]), t3 = _mm512_unpackhi_epi32(c[2], c[3]);
  const __m512i u0 = _mm512_unpacklo_epi64(t0, t1), u1 = _mm512_unpackhi_epi64(t0, t1);
  const __m512i u2 = _mm512_unpacklo_epi64(t2, t3), u3 = _mm512_unpackhi_epi64(t2, t3);
  const __m512i v0 = _mm512_shuffle_i32x4(u0, u1, 0x44), v1 = _mm512_shuffle_i32x4(u2, u3, 0x44);
  const __m512i v2 = _mm512_shuffle_i32x4(u0, u1, 0xEE), v3 = _mm512_shuffle_i32x4(u2, u3, 0xEE);
  _mm512_storeu_si512(draws, _mm512_shuffle_i32x4(v0, v1, 0x88));
  _mm512_storeu_si512(draws + 16, _mm512_shuffle_i32x4(v0, v1, 0xDD));
  _mm512_storeu_si512(draws + 32, _mm512_shuffle_i32x4(v2, v3, 0x88));
  _mm512_storeu_si512(draws + 48, _mm512_shuffle_i32x4(v2, v3, 0xDD));
#elif defined(__AVX2__)
  for (int j0 = 0; j0 < blocks; j0 += 8) {  // as many groups of 8 blocks as needed, scattered into element order
    alignas(32) uint32_t words[4][8];         // words[l][j]: word l of block first + j0 + j
    __m256i c[4];
    lane_blocks(seed, first + uint64_t(j0), c);
    for (int l = 0; l < 4; ++l) _mm256_store_si256(reinterpret_cast<__m256i*>(words[l]), c[l]);
    for (int j = 0; j < 8; ++j)
      for (int l = 0; l < 4; ++l) draws[4 * (j0 + j) + l] = words[l][j];
  }
#else
  for (int j = 0; j < blocks; ++j) {
    const philox::U32x4 r = philox::block(seed, first + uint64_t(j));
    for (int l = 0; l < 4; ++l) draws[4 * j + l] = r.v[l];
  }
#endif
}
MP_AVX512_END

// f[s] = 1 / (1 - p) (0 when p == 1) if element first + s of stream `seed`
// is kept, else 0, for s in [0, n).
template <class R>
void dropout_factors(uint64_t seed, float p, uint64_t first, int64_t n, R* f) {
  const R scale = p < 1.f ? R(1) / (R(1) - R(p)) : R(0);
  uint64_t block = first / 4;        // the block holding element `first`
  int64_t s0 = -int64_t(first % 4);  // f's index of that block's lane 0
  for (; s0 < n; s0 += 64, block += 16) {
    const int64_t lo = std::max<int64_t>(0, -s0), hi = std::min<int64_t>(64, n - s0);  // the run's part of the 64
    uint32_t draws[64];
    sixteen_blocks(seed, block, int((hi + 3) / 4), draws);
    for (int64_t e = lo; e < hi; ++e) f[s0 + e] = philox::dropout_keeps(draws[e], p) ? scale : R(0);
  }
}

}  // namespace mp::cpu
