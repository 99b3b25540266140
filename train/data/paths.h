// Where minipeft finds its data when no path is given: MP_DATA, else the
// data/ folder of the source tree it was built from.
#pragma once
#include <cstdlib>
#include <string>

namespace mp::train {

inline std::string data_dir() {
  if (const char* env = std::getenv("MP_DATA")) return env;
  return MP_SOURCE_DATA_DIR;  // set by train/meson.build
}
inline std::string default_tokenizer_dir() { return data_dir() + "/gpt2-tokenizer"; }

}  // namespace mp::train
