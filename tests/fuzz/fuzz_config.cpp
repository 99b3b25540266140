// libFuzzer target: config.json parsing (models/config.cpp). Any input must
// either parse into a config that passes the checks below or throw mp::Error;
// nothing else (no crash, no other exception, no sanitizer report).
//
// Built with -Dfuzz=enabled under clang (tests/fuzz/meson.build); run from the
// repository root by scripts/fuzz.sh, from tests/fuzz/corpus/fuzz_config/.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/error.h"
#include "models/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    mp::models::ModelConfig c = mp::models::parse_config(text, "fuzz/config.json");
    // What parse_config promises about a config it accepts.
    if (c.num_layers <= 0 || c.num_heads <= 0 || c.hidden_size <= 0 || c.ffn_dim <= 0 || c.max_positions <= 0 ||
        c.vocab_size <= 0 || c.embed_dim() <= 0 || c.hidden_size % c.num_heads != 0)
      std::abort();
    // Writing it back and reading that must give the same shape.
    mp::models::ModelConfig again = mp::models::parse_config(c.to_json(), "fuzz/roundtrip.json");
    if (again.num_layers != c.num_layers || again.hidden_size != c.hidden_size || again.ffn_dim != c.ffn_dim ||
        again.arch != c.arch || again.vocab_size != c.vocab_size)
      std::abort();
  } catch (const mp::Error&) {
    // A clear error is the expected outcome for bad input.
  }
  return 0;
}
