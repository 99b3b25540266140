// Philox4x32-10: the counter-based random number generator of Salmon et al.,
// "Parallel Random Numbers: As Easy as 1, 2, 3" (SC 2011), as in Random123.
//
// A counter-based generator is a keyed hash: four 32-bit outputs are a pure
// function of a 128-bit counter and a 64-bit key. Element i of a random
// tensor uses counter = i / 4 and output lane i % 4, with the seed as key, so
// its value depends only on (seed, i): not on threads, chunking or device.
//
// Plain constexpr functions on integers, no library calls, so CUDA code can
// include this header and use the same functions under __host__ __device__.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define MP_HOST_DEVICE __host__ __device__
#else
#define MP_HOST_DEVICE
#endif

namespace mp::philox {

struct U32x4 {
  uint32_t v[4];
};

// The multipliers and the Weyl key increments (golden ratio, sqrt(3) - 1).
inline constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
inline constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

// One round: two 32x32 -> 64-bit multiplies, their halves mixed with the key.
MP_HOST_DEVICE constexpr U32x4 mix_round(U32x4 c, uint32_t k0, uint32_t k1) {
  uint64_t p0 = uint64_t(kM0) * c.v[0];
  uint64_t p1 = uint64_t(kM1) * c.v[2];
  uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
  uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
  return U32x4{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
}

// Ten rounds, the key bumped by the Weyl constants between rounds.
MP_HOST_DEVICE constexpr U32x4 philox4x32_10(U32x4 counter, uint32_t key0, uint32_t key1) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      key0 += kW0;
      key1 += kW1;
    }
    counter = mix_round(counter, key0, key1);
  }
  return counter;
}

// The four outputs for block `block` (elements 4*block .. 4*block+3) of the
// stream `seed`.
MP_HOST_DEVICE constexpr U32x4 block(uint64_t seed, uint64_t block) {
  return philox4x32_10(U32x4{{uint32_t(block), uint32_t(block >> 32), 0u, 0u}}, uint32_t(seed),
                       uint32_t(seed >> 32));
}

// 24 random bits -> a float in [0, 1), exactly representable.
MP_HOST_DEVICE constexpr float uniform01(uint32_t x) { return float(x >> 8) * (1.0f / 16777216.0f); }
// 24 random bits -> a float in (0, 1] (safe for log in Box-Muller).
MP_HOST_DEVICE constexpr float uniform01_open0(uint32_t x) { return float((x >> 8) + 1u) * (1.0f / 16777216.0f); }

// Dropout with probability p keeps an element whose draw gives a uniform >= p.
// The one rule for every dropout mask: ops::dropout, the fused attention's
// (CPU and CUDA) and the CUDA dropout kernel must draw the same masks.
MP_HOST_DEVICE constexpr bool dropout_keeps(uint32_t draw, float p) { return uniform01(draw) >= p; }

// The uniform [0, 1) value of element i of stream `seed`.
MP_HOST_DEVICE constexpr float uniform_at(uint64_t seed, uint64_t i) {
  return uniform01(block(seed, i / 4).v[i % 4]);
}

}  // namespace mp::philox
