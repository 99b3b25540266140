// NF4 dequantization on the GPU (the layout is in engine/nf4.h): one thread
// per value, codes and scales read straight from the packed bytes, the
// products rounded as the CPU (engine/cpu/nf4.cpp) and bitsandbytes round
// them: the result is the CPU's, bit for bit.
#include <algorithm>

#include "cuda/device_util.cuh"

namespace mp::cuda {

namespace {

__global__ void nf4_dequantize_kernel(int64_t begin, int64_t count, const uint8_t* packed, const uint8_t* absmax,
                                      const float* nested, float offset, Nf4Tables tables, float* out) {
  MP_GRID_STRIDE(i, count) {
    const int64_t g = begin + i;   // the value's index in the whole matrix
    const int64_t block = g / 64;  // kNf4Block values per absmax, kNf4Group = 256 absmax per nested one
    // dynamic[q] * nested + offset: two roundings, never one fused multiply-add.
    const float scale = __fadd_rn(__fmul_rn(tables.dynamic[absmax[block]], nested[block / 256]), offset);
    const uint8_t byte = packed[g / 2];
    out[i] = __fmul_rn(tables.nf4[g % 2 ? byte & 15 : byte >> 4], scale);
  }
}

}  // namespace

void launch_nf4_dequantize(int64_t begin, int64_t count, const uint8_t* packed, const uint8_t* absmax,
                           const float* nested, float offset, const Nf4Tables& tables, float* out) {
  if (count == 0) return;
  constexpr int threads = 256;
  const int blocks = int(std::min<int64_t>((count + threads - 1) / threads, 65535 * 8));
  nf4_dequantize_kernel<<<blocks, threads>>>(begin, count, packed, absmax, nested, offset, tables, out);
}

}  // namespace mp::cuda
