// libFuzzer target: a tokenizer's files (--tokenizer DIR: vocab.json +
// merges.txt, models/tokenizer.h). The input split at its first NUL byte is
// the two files; whatever loads must encode and decode text back unchanged.
// Any input must end in a tokenizer or an mp::Error.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine/error.h"
#include "tests/fuzz/fuzz_support.h"

using namespace mp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = fuzz::scratch_dir("fuzz_tokenizer_files");
  const auto [vocab, merges] = fuzz::split_at_nul(fuzz::as_text(data, size));
  fuzz::write_bytes(dir + "/vocab.json", vocab);
  fuzz::write_bytes(dir + "/merges.txt", merges);
  try {
    const models::Tokenizer tok = models::Tokenizer::from_dir(dir);
    const std::string text = "Hello, world: 2+2=4 <|endoftext|> \xc3\xa9t\xc3\xa9 \xf0\x9f\x99\x82";
    if (tok.decode(tok.encode(text)) != text) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
