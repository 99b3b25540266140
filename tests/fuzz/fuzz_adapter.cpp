// libFuzzer target: adapter_config.json parsing and adapter loading must turn
// any input into a PeftModel or an mp::Error, never a crash.
//
// The input is split at the first NUL byte: before it, adapter_config.json;
// after it, adapter_model.safetensors. Both are written to a temporary
// directory and loaded onto the tiny GPT-2 fixture (MP_FIXTURES, default
// tests/fixtures).
//
// Built with -Dfuzz=enabled under clang (tests/fuzz/meson.build); run from the
// repository root by scripts/fuzz.sh, from tests/fuzz/corpus/fuzz_adapter/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>

#include "engine/error.h"
#include "models/load.h"
#include "peft/peft_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string fixtures = std::getenv("MP_FIXTURES") ? std::getenv("MP_FIXTURES") : "tests/fixtures";
  static const std::string dir =
      (std::filesystem::temp_directory_path() / ("fuzz_adapter_" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(dir);

  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find('\0');
  const std::string_view config = input.substr(0, split);
  const std::string_view weights = split == std::string_view::npos ? std::string_view() : input.substr(split + 1);
  std::ofstream(dir + "/adapter_config.json", std::ios::binary) << config;
  std::ofstream(dir + "/adapter_model.safetensors", std::ios::binary) << weights;

  try {
    mp::peft::parse_adapter_config(config, "fuzz");
  } catch (const mp::Error&) {
  }
  try {
    auto pm = mp::peft::load_peft_model(mp::models::load_pretrained(fixtures + "/gpt2_tiny"), dir);
  } catch (const mp::Error&) {
  }
  return 0;
}
