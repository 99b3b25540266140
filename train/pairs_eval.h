// How well a model completes pairs (train/data/pairs.h), as `minipeft eval` reports it:
//
//   loss         the token-weighted mean NLL over every completion token of
//                the set, <|endoftext|> included: total NLL / number of tokens
//   exact match  the share of examples whose greedy continuation of the
//                prompt, up to <|endoftext|> or the completion's length + 1
//                tokens, is exactly the completion's tokens then <|endoftext|>
//
// Both come from one teacher-forced forward per batch. Greedy decoding from
// the prompt reproduces completion + end token exactly when, at every
// completion position, the argmax of the logits given the reference prefix is
// the reference's next token: while the two agree the prefixes are the same,
// and at the first disagreement the continuation differs. (Ties go to the
// first index, as in generation.) An example cut to the sequence length has
// lost its end token and counts as a miss.
#pragma once
#include <cstdint>
#include <vector>

#include "train/data/pairs.h"
#include "train/trainer.h"

namespace mp::train {

struct PairsScore {
  double nll = 0;        // summed over completion tokens
  int64_t tokens = 0;    // completion tokens scored (a token at position 0 has no prediction)
  int64_t exact = 0;     // examples matched exactly
  int64_t examples = 0;  // examples with a prompt (those exact match is defined for)
  double loss() const { return tokens > 0 ? nll / double(tokens) : 0; }
  double accuracy() const { return examples > 0 ? double(exact) / double(examples) : 0; }
};

// Score `examples` B at a time (padding with pad_id), without gradients, in
// eval mode. `mixed`: each row runs with its example's adapter (the base
// model where it names none) in one mixed batch (PeftModel's adapter_names).
PairsScore score_pairs(const TrainedModel& m, const std::vector<const Example*>& examples, int64_t B, int32_t pad_id,
                       bool mixed = false);

}  // namespace mp::train
