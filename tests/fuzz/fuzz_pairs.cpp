// libFuzzer target: a pairs file (train/data/pairs.h) as train and eval read
// it: its lines, the examples tokenized and cut to a sequence length, the
// split, the scored-token check, padded and packed batches. Any input must
// end in batches or an mp::Error, never a crash or a sanitizer report; what is
// accepted must keep the reader's promises (checked below).
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
    const std::vector<train::PairLine> lines = train::read_pairs(in, "fuzz.jsonl");
    for (size_t i = 1; i < lines.size(); ++i)
      if (lines[i].line <= lines[i - 1].line) std::abort();
    const int64_t T = 2 + int64_t(size % 31);  // a sequence length from the input
    const models::Tokenizer& tok = fuzz::gpt2_tokenizer();
    train::Examples examples = train::tokenize_pairs(lines, tok, T, "fuzz.jsonl");
    for (const train::Example& e : examples.examples)
      if (e.ids.empty() || int64_t(e.ids.size()) > T || e.prompt_tokens > int64_t(e.ids.size())) std::abort();
    train::PairsDataset pairs(std::move(examples), 0.25, tok.eos_id(), "fuzz.jsonl");
    if (pairs.train_examples() > 0) {
      train::require_scored_tokens(pairs.training_part(), "fuzz.jsonl", "training part");
      const train::Batch padded = pairs.train_batch(3, 1, 0);
      if (padded.ids.shape() != padded.labels.shape() || padded.ids.shape()[0] != 3) std::abort();
      pairs.set_packing(T);
      const train::Batch packed = pairs.train_batch(2, 1, 1);
      if (packed.ids.shape() != Shape{2, T}) std::abort();
    }
    if (pairs.val_examples() > 0) pairs.val_batches(2, 2);
  } catch (const Error&) {
  }
  return 0;
}
