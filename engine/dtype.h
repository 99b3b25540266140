// Element types: f32 (the default), bf16 (storage for frozen weights and
// mixed precision), i32 (token ids, targets), f64 (gradient checks) and u8
// (raw bytes: the packed codes and quantized scales of an NF4 weight,
// engine/nf4.h).
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mp {

enum class DType : uint8_t { f32, bf16, i32, f64, u8 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::f64: return 8;
    case DType::u8: return 1;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::f64: return "f64";
    case DType::u8: return "u8";
  }
  return "?";
}

// bfloat16: the top 16 bits of an IEEE float32.
struct bf16 {
  uint16_t bits;
};

// Round to nearest, ties to even; NaN stays a (quiet) NaN.
constexpr bf16 float_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}

constexpr float bf16_to_float(bf16 h) { return std::bit_cast<float>(uint32_t(h.bits) << 16); }

// The C++ type that holds one element of each dtype.
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }

}  // namespace mp
