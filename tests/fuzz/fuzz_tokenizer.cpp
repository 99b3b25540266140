// libFuzzer target: the GPT-2 tokenizer (models/tokenizer.cpp). For any bytes:
//   - valid UTF-8 encodes, and decode(encode(s)) == s;
//   - invalid UTF-8 throws mp::Error naming the same byte offset at which
//     PCRE2's own UTF-8 check (an independent validator) finds the error;
//   - the bytes read as token ids decode, or throw mp::Error for a bad id;
// and nothing else (no crash, no other exception, no sanitizer report).
//
// Built with -Dfuzz=enabled under clang (tests/fuzz/meson.build); run from the
// repository root by scripts/fuzz.sh, from tests/fuzz/corpus/fuzz_tokenizer/.
//
// MP_DATA is the data/ folder (default: ./data).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "engine/error.h"
#include "models/tokenizer.h"

namespace {

const mp::models::Tokenizer& tokenizer() {
  static const mp::models::Tokenizer tok = [] {
    const char* data = std::getenv("MP_DATA");
    return mp::models::Tokenizer::from_dir(std::string(data ? data : "data") + "/gpt2-tokenizer");
  }();
  return tok;
}

// PCRE2's UTF-8 check: the offset of the first invalid sequence, or -1.
long pcre2_invalid_offset(std::string_view text) {
  static pcre2_code* any = [] {
    int error = 0;
    PCRE2_SIZE offset = 0;
    return pcre2_compile(reinterpret_cast<PCRE2_SPTR>(""), 0, PCRE2_UTF, &error, &offset, nullptr);
  }();
  pcre2_match_data* match = pcre2_match_data_create(1, nullptr);
  const int rc = pcre2_match(any, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0, match, nullptr);
  const long offset = rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21
                          ? static_cast<long>(pcre2_get_startchar(match))
                          : -1;
  pcre2_match_data_free(match);
  return offset;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const long invalid_at = pcre2_invalid_offset(text);
  try {
    const std::vector<int32_t> ids = tokenizer().encode(text);
    if (invalid_at >= 0) std::abort();                    // accepted invalid UTF-8
    if (tokenizer().decode(ids) != text) std::abort();    // lost or changed bytes
  } catch (const mp::Error& e) {
    const std::string expected = "invalid UTF-8 at byte offset " + std::to_string(invalid_at);
    if (invalid_at < 0 || std::string(e.what()) != expected) std::abort();
  }

  // The same bytes as token ids: decode them, or refuse an id out of range.
  std::vector<int32_t> ids(size / sizeof(int32_t));
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * sizeof(int32_t));
  try {
    tokenizer().decode(ids);
  } catch (const mp::Error&) {
  }
  return 0;
}
