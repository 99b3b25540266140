#include "train/data/training_data.h"

#include <cstdio>

#include "engine/error.h"

#include "train/data/dataset.h"
#include "train/data/pairs.h"

namespace mp::train {

namespace {

class TextData : public TrainingData {
 public:
  explicit TextData(TokenDataset data) : data_(std::move(data)) {}
  Batch train_batch(int64_t B, int64_t T, uint64_t seed, int64_t step, nn::BatchRows rows) const override {
    return data_.train_batch(B, T, seed, step, rows);
  }
  std::vector<Batch> val_batches(int64_t B, int64_t T, int64_t max_batches) const override {
    std::vector<Tensor> windows = data_.val_batches(B, T, max_batches);
    return {windows.begin(), windows.end()};
  }

 private:
  TokenDataset data_;
};

// The examples were cut to T when loaded; T here is the same --seq.
class PairsData : public TrainingData {
 public:
  explicit PairsData(PairsDataset data) : data_(std::move(data)) {}
  Batch train_batch(int64_t B, int64_t, uint64_t seed, int64_t step, nn::BatchRows rows) const override {
    return data_.train_batch(B, seed, step).rows(rows);  // padded as the whole batch is
  }
  std::vector<Batch> val_batches(int64_t B, int64_t, int64_t max_batches) const override {
    return data_.val_batches(B, max_batches);
  }

 private:
  PairsDataset data_;
};

}  // namespace

std::unique_ptr<TrainingData> load_training_data(const std::string& path, double val_fraction, int64_t T, bool packing,
                                                 const models::Tokenizer& tokenizer) {
  if (!is_pairs_file(path)) return std::make_unique<TextData>(TokenDataset(load_token_ids(path, tokenizer), val_fraction, path));
  Examples examples = tokenize_pairs(read_pairs_file(path), tokenizer, T, path);
  if (examples.truncated > 0)
    std::fprintf(stderr, "note: %lld of %zu examples in %s are longer than --seq %lld tokens and were cut\n",
                 static_cast<long long>(examples.truncated), examples.examples.size(), path.c_str(),
                 static_cast<long long>(T));
  PairsDataset data(std::move(examples), val_fraction, tokenizer.eos_id(), path);
  if (data.train_examples() == 0)
    fail("{}: --val-fraction {} holds out the last {} of its {} example{}, which leaves none to train on (add "
         "examples, or lower --val-fraction; 0 holds out none)",
         path, val_fraction, data.val_examples(), data.examples().size(), data.examples().size() == 1 ? "" : "s");
  require_scored_tokens(data.training_part(), path, "training part");
  if (packing) data.set_packing(T);
  return std::make_unique<PairsData>(std::move(data));
}

}  // namespace mp::train
