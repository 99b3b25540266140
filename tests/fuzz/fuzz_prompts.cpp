// libFuzzer target: a prompts file as generate --prompts reads it
// ({"prompt": ..., "adapter": ...} lines, train/data/pairs.h), each prompt
// tokenized. Any input must end in prompts or an mp::Error.
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>

#include "engine/error.h"
#include "tests/fuzz/fuzz_support.h"
#include "train/data/pairs.h"

using namespace mp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream in{std::string(fuzz::as_text(data, size))};
  try {
    for (const train::PairLine& l : train::read_pairs(in, "prompts.jsonl", /*allow_adapter=*/true,
                                                      /*need_completion=*/false)) {
      if (l.line <= 0) std::abort();
      const std::vector<int32_t> ids = fuzz::gpt2_tokenizer().encode(l.prompt);
      if (fuzz::gpt2_tokenizer().decode(ids) != l.prompt) std::abort();
    }
  } catch (const Error&) {
  }
  return 0;
}
