// libFuzzer target for the safetensors reader: no input may crash it; every
// rejection must be an mp::Error. Whatever it accepts must load in every
// dtype it claims to support without reading out of bounds.
//
// Built with -Dfuzz=enabled under clang (tests/fuzz/meson.build); run from the
// repository root by scripts/fuzz.sh, from tests/fuzz/corpus/fuzz_safetensors/.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/error.h"
#include "nn/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mp;
  try {
    nn::SafetensorsFile f =
        nn::SafetensorsFile::from_bytes(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
    for (const std::string& name : f.names()) {
      const nn::TensorInfo& info = f.info(name);
      if (shape_numel(info.shape) > (1 << 20)) continue;  // valid but large: the fuzzer wants speed
      bool integer = info.dtype == nn::StDType::I32 || info.dtype == nn::StDType::I64;
      for (DType want : integer ? std::initializer_list<DType>{DType::i32}
                                : std::initializer_list<DType>{DType::f32, DType::bf16, DType::f64}) {
        try {
          Tensor t = f.load(name, want);
          if (t.shape() != info.shape) __builtin_trap();
        } catch (const Error&) {  // e.g. an I64 value that does not fit in i32
        }
      }
    }
    (void)f.metadata();
  } catch (const Error&) {
  }
  return 0;
}
