// Shared by the fuzz targets: the GPT-2 tokenizer from MP_DATA (default
// ./data, as scripts/fuzz.sh runs them from the repository root), and a
// temporary folder of this process for targets that read files by name.
#pragma once
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "models/tokenizer.h"

namespace mp::fuzz {

inline const models::Tokenizer& gpt2_tokenizer() {
  static const models::Tokenizer tok = [] {
    const char* data = std::getenv("MP_DATA");
    return models::Tokenizer::from_dir(std::string(data ? data : "data") + "/gpt2-tokenizer");
  }();
  return tok;
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A folder of its own for this process (fuzzers may run side by side).
inline const std::string& scratch_dir(const std::string& name) {
  static const std::string dir = [&] {
    auto d = std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d.string();
  }();
  return dir;
}

inline void write_bytes(const std::string& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// The input split at its first NUL byte: two files in one input.
inline std::pair<std::string_view, std::string_view> split_at_nul(std::string_view input) {
  const size_t at = input.find('\0');
  if (at == std::string_view::npos) return {input, {}};
  return {input.substr(0, at), input.substr(at + 1)};
}

}  // namespace mp::fuzz
