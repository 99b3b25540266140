// NF4: a frozen weight matrix in 4-bit NormalFloat (QLoRA, Dettmers et al.
// 2023), in bitsandbytes' layout so that our bytes and theirs compare directly
// (tests/engine/test_nf4.cpp against tests/fixtures/nf4/):
//
//   the values, in row-major order, in blocks of 64: each value is the index
//   (0..15) of the nearest of the 16 NF4 code values to value / absmax(block);
//   two indices per byte, the first in the high nibble (an odd count pads
//   the last low nibble with 7, the code of 0);
//
//   the absmax of each block, double-quantized (compress_statistics=True):
//   offset = their mean; (absmax - offset) in groups of 256 is quantized to
//   8 bits against bitsandbytes' signed dynamic code (256 values; the entry
//   its 65536-bin table picks, engine/cpu/nf4_code_lut.h), with one f32
//   nested absmax per group.
//
// The bytes are bitsandbytes 0.50's on its CPU path (tests/engine/test_nf4.cpp,
// tests/peft/test_qlora.cpp). The offset is the correctly rounded mean;
// bitsandbytes takes torch's float32 sum, which may differ in the last bit.
//
// So a value costs 4 bits + 8/64 + 32/(64*256) bits: 4.127 bits, against 32
// for f32 and 16 for bf16. Dequantized, value = nf4[code] * absmax with
// absmax = dynamic[q] * nested_absmax + offset, each product and sum rounded
// to f32 as bitsandbytes does.
//
// The matrix is never needed whole in f32: nf4_matmul dequantizes one panel
// of rows at a time into Tag::workspace and hands it to the GEMM.
#pragma once
#include <array>
#include <cstdint>

#include "engine/tensor.h"

namespace mp {

constexpr int64_t kNf4Block = 64;   // values per absmax
constexpr int64_t kNf4Group = 256;  // absmax per nested absmax

// The 16 NF4 values, ascending, from -1 to 1 with an exact 0 (index 7).
const std::array<float, 16>& nf4_code();
// bitsandbytes' create_dynamic_map(signed=True): 256 values, ascending, in [-1, 1].
const std::array<float, 256>& nf4_dynamic_code();

struct Nf4Tensor {
  Shape shape;           // the matrix's logical shape, e.g. (out, in)
  Tensor packed;         // u8 ((numel + 1) / 2): the codes, two per byte
  Tensor absmax;         // u8 (blocks): the 8-bit quantized absmax of each block of 64
  Tensor nested_absmax;  // f32 (groups): the absmax of each group of 256 (absmax - offset)
  float offset = 0.f;    // the mean absmax, subtracted before the nested quantization

  bool defined() const { return packed.defined(); }
  int64_t numel() const { return shape_numel(shape); }
  Device device() const { return packed.device(); }
  size_t nbytes() const { return packed.nbytes() + absmax.nbytes() + nested_absmax.nbytes(); }
};

int64_t nf4_blocks(int64_t numel);  // ceil(numel / 64)
int64_t nf4_groups(int64_t numel);  // ceil(blocks / 256)

// An empty NF4 tensor of `shape` on device d, its tensors tagged `tag`.
Nf4Tensor nf4_empty(const Shape& shape, Device d, Tag tag);
// Quantize a floating-point tensor (f32, bf16 or f64; read as f32), any
// shape; the result's tensors get the current TagScope's tag.
Nf4Tensor nf4_quantize(const Tensor& w);
// The f32 tensor of q.shape (the whole matrix: for checks and merging).
Tensor nf4_dequantize(const Nf4Tensor& q);

// Matrix product with a 2-D NF4 matrix W (O, K), the weight of a Linear:
//   transpose_w:  x (..., K) -> x W^T (..., O)    (the forward)
//   otherwise:    x (..., O) -> x W   (..., K)    (the input's gradient)
// x is f32, or bf16 under mixed precision (on the CPU the panels are then
// bf16 too, where it has bf16 products); the result is f32.
Tensor nf4_matmul(const Tensor& x, const Nf4Tensor& w, bool transpose_w);

}  // namespace mp
