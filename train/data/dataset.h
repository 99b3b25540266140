// Training data for the trainer: a UTF-8 text file, tokenized once with the
// GPT-2 tokenizer and cached next to it as uint16 ids (<file>.tokens.bin),
// split into a training part and a held-out tail, cut into (B, T) windows.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "models/tokenizer.h"
#include "nn/rng.h"

namespace mp::train {

// The ids of a text file. The cache is reused when the text's size and hash
// match; when it cannot be written (read-only folder) the ids are still
// returned. An empty, unreadable or non-UTF-8 file is an mp::Error naming it.
std::vector<int32_t> load_token_ids(const std::string& text_path, const models::Tokenizer& tokenizer);

// Windows of T consecutive ids, (B, T) i32 per batch. The models' loss
// shifts them into targets as HF does (labels = input ids). The last
// `val_fraction` of the ids is held out for evaluation.
class TokenDataset {
 public:
  TokenDataset(std::vector<int32_t> ids, double val_fraction, const std::string& name);
  int64_t train_tokens() const { return split_; }
  int64_t val_tokens() const { return int64_t(ids_.size()) - split_; }
  // A random training batch: window starts drawn from (seed, step), so a
  // resumed run sees the same batches as an uninterrupted one. With `rows`
  // (data parallelism), only rows [rows.first, rows.first + rows.count) of
  // that batch: each rank its own shard of one global batch.
  Tensor train_batch(int64_t B, int64_t T, uint64_t seed, int64_t step, nn::BatchRows rows = {}) const;
  // The held-out part cut into consecutive windows, at most max_batches batches.
  std::vector<Tensor> val_batches(int64_t B, int64_t T, int64_t max_batches) const;

 private:
  Tensor make_batch(const std::vector<int64_t>& starts, int64_t T) const;
  void check_fits(int64_t tokens, int64_t T, const char* part) const;
  std::vector<int32_t> ids_;
  int64_t split_;
  std::string name_;
};

}  // namespace mp::train
