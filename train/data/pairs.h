// Input-output pairs for fine-tuning: a JSONL file with one object per line,
//
//   {"prompt": "Q: 2+2=", "completion": " 4"}     the loss is on the completion only
//   {"text": "a plain document"}                  the loss is on every token
//
// Each example is encode(prompt) + encode(completion) + <|endoftext|>, the
// two parts tokenized separately (as TRL's prompt-completion datasets). Its
// labels are -100 on the prompt (HF's ignore index) and the ids themselves
// on the completion and the end token; the models' loss shifts them as HF
// does, so the first completion token is predicted from the last prompt token.
// An example longer than the sequence length is cut to it (the count is
// kept). Batches are right-padded to their longest example, with an
// attention mask of 0 and labels of -100 on the padding; with causal
// attention a real token never sees a pad to its right, so padding changes
// no real token's logits.
#pragma once
#include <algorithm>
#include <cstdint>
#include <istream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "models/tokenizer.h"
#include "train/data/batch.h"

namespace mp::train {

// One line of a pairs file as written.
struct PairLine {
  std::string prompt;      // "" for a {"text": ...} line
  std::string completion;  // the text of a {"text": ...} line
  std::string adapter;     // the "adapter" key, where allowed ("" when absent)
  int64_t line = 0;        // 1-based line number in the file
};

// The lines of `path`; blank lines are skipped. mp::Error naming the file, the
// line and the key (nn/json_input.h) for a line longer than 1 MiB
// (train/data/line_reader.h), one that is not JSON (a raw NUL byte, a number
// beyond a double, a duplicate key, a bad string) or not UTF-8, not an object,
// lacks "prompt" and "completion" (or "text"), mixes them, has another key
// (only "adapter" when allow_adapter), or has a value that is not a string;
// for a file with no example at all, and for a directory. Without
// need_completion (prompts to generate from), a line may be {"prompt": ...} alone.
std::vector<PairLine> read_pairs_file(const std::string& path, bool allow_adapter = false, bool need_completion = true);
// The same from a stream; `name` stands for the file in errors.
std::vector<PairLine> read_pairs(std::istream& in, const std::string& name, bool allow_adapter = false,
                                 bool need_completion = true);

// Whether --data names a pairs file (it ends in ".jsonl").
bool is_pairs_file(const std::string& path);

// One tokenized example: ids = prompt, completion, end token (cut to the
// sequence length); the first prompt_tokens of them are the prompt.
struct Example {
  std::vector<int32_t> ids;
  std::string adapter;  // the line's "adapter" (mixed batches), "" when none
  int64_t prompt_tokens = 0;
  bool cut = false;  // longer than the sequence length: the tail (at least the end token) is gone
  int64_t completion_tokens() const { return int64_t(ids.size()) - prompt_tokens; }  // with the end token
  // The tokens the loss is on: the completion and the end token, less the
  // example's first token (no token before it predicts it). 0 for an empty
  // example and for one whose prompt fills the whole sequence.
  int64_t scored_tokens() const {
    return std::max<int64_t>(0, int64_t(ids.size()) - std::max<int64_t>(prompt_tokens, 1));
  }
};

// mp::Error unless some example of `part` has a scored token, saying why none
// has: "x.jsonl: nothing to learn: no example of the training part has a token
// to score (of its 3 examples, 2 have a prompt that fills all --seq 8 tokens,
// so their completion is cut away; 1 is empty)". `name` names the file,
// `part_name` the part of it.
void require_scored_tokens(std::span<const Example> part, const std::string& name, std::string_view part_name);

// prompt + completion + end, cut to max_tokens.
Example make_example(std::span<const int32_t> prompt, std::span<const int32_t> completion, int32_t end_id,
                     int64_t max_tokens);

// Tokenize lines with `tokenizer` (its eos_id() ends each example).
struct Examples {
  std::vector<Example> examples;
  int64_t truncated = 0;  // how many were longer than max_tokens
};
Examples tokenize_pairs(const std::vector<PairLine>& lines, const models::Tokenizer& tokenizer, int64_t max_tokens,
                        const std::string& path);

// Examples right-padded with pad_id to the longest of them: ids, labels and
// attention mask (B, T_max) i32.
Batch pad_batch(std::span<const Example* const> examples, int32_t pad_id);

// Packing: examples placed in order into rows of T tokens; one that does not
// fit in what is left of a row starts the next row. Each example is its own
// segment (segment_ids 0, 1, ... along a row) with positions from 0, so no
// token attends to, or takes its position from, another example. The first
// token of each example gets label -100 (the token before it in the row
// belongs to another example); the rest of a row is padding (mask 0, labels
// -100, segment -1). Returns as many rows as needed, (rows, T) each.
Batch pack_batch(std::span<const Example* const> examples, int64_t T, int32_t pad_id);

// The examples of a pairs file, split into a training part and a held-out
// tail of the last lines (val_fraction of them, as for text).
class PairsDataset {
 public:
  PairsDataset(Examples examples, double val_fraction, int32_t pad_id, const std::string& name);
  // Pack batches into B full rows of T tokens (pack_batch) instead of padding B examples.
  void set_packing(int64_t T) { packed_T_ = T; }
  int64_t train_examples() const { return split_; }
  int64_t val_examples() const { return int64_t(examples_.size()) - split_; }
  int64_t truncated() const { return truncated_; }
  const std::vector<Example>& examples() const { return examples_; }
  std::span<const Example> training_part() const { return std::span(examples_).first(size_t(split_)); }
  std::span<const Example> held_out_part() const { return std::span(examples_).subspan(size_t(split_)); }
  // B training examples drawn from (seed, step), so a resumed run sees the
  // same batches as an uninterrupted one. Packed: examples drawn so until the
  // next one would not fit in B rows.
  Batch train_batch(int64_t B, uint64_t seed, int64_t step) const;
  // The held-out examples in order, B at a time (packed: B rows at a time),
  // at most max_batches batches.
  std::vector<Batch> val_batches(int64_t B, int64_t max_batches) const;

 private:
  std::vector<Example> examples_;
  int64_t split_ = 0;
  int64_t truncated_ = 0;
  int32_t pad_id_ = 0;
  int64_t packed_T_ = 0;  // 0: padded batches
  std::string name_;
};

}  // namespace mp::train
