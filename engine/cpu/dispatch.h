// Turning a runtime DType into a C++ element type:
//
//   visit_float(t.dtype(), "softmax", [&]<class T>() { kernel<T>(...); });
//
// calls the lambda with T = float or double, and throws mp::Error naming the
// kernel for any other dtype.
#pragma once
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "engine/dtype.h"
#include "engine/error.h"

namespace mp::cpu {

template <class F>
decltype(auto) visit_float(DType dt, std::string_view what, F&& f) {
  switch (dt) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
    default: break;
  }
  fail("{}: dtype {} is not supported on cpu (f32 or f64)", what, dtype_name(dt));
}

template <class F>
decltype(auto) visit_any(DType dt, F&& f) {
  switch (dt) {
    case DType::f32: return f.template operator()<float>();
    case DType::bf16: return f.template operator()<bf16>();
    case DType::i32: return f.template operator()<int32_t>();
    case DType::f64: return f.template operator()<double>();
    case DType::u8: return f.template operator()<uint8_t>();
  }
  fail("unknown dtype {}", int(dt));
}

// Element conversions between the storage types (bf16 goes through f32).
template <class To, class From>
constexpr To convert(From x) {
  if constexpr (std::is_same_v<From, bf16>) {
    return convert<To>(bf16_to_float(x));
  } else if constexpr (std::is_same_v<To, bf16>) {
    return float_to_bf16(float(x));
  } else {
    return To(x);
  }
}

// The type sums are accumulated in, for f32 and f64 alike: double, so long
// f32 sums stay accurate.
using Acc = double;

}  // namespace mp::cpu
