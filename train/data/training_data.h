// What the trainer reads: a text file (train/data/dataset.h) or, when the name
// ends in ".jsonl", a pairs file (train/data/pairs.h), behind one interface.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/tokenizer.h"
#include "nn/rng.h"
#include "train/data/batch.h"

namespace mp::train {

class TrainingData {
 public:
  virtual ~TrainingData() = default;
  // Micro-batch `step` of a run seeded with `seed`: B rows of at most T tokens;
  // with `rows` (data parallelism) just those rows of the B.
  virtual Batch train_batch(int64_t B, int64_t T, uint64_t seed, int64_t step, nn::BatchRows rows = {}) const = 0;
  // The held-out part, at most max_batches batches of B rows.
  virtual std::vector<Batch> val_batches(int64_t B, int64_t T, int64_t max_batches) const = 0;
};

// Text windows of T tokens, or pairs cut to T tokens (a note on stderr says
// how many were cut). mp::Error naming the file for bad input.
// With `packing` (pairs only), batches are B rows of T tokens packed with examples.
std::unique_ptr<TrainingData> load_training_data(const std::string& path, double val_fraction, int64_t T, bool packing,
                                                 const models::Tokenizer& tokenizer);

}  // namespace mp::train
