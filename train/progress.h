// The one-line progress display of `minipeft train` on a terminal:
//   step 120/1000 | loss 3.2104 | 5,210 tok/s | mem 812 MiB | ETA 2m49s
// Redrawn in place (\r); silent when stderr is not a TTY.
#pragma once
#include <cstdint>

#include "train/callbacks.h"

namespace mp::train {

class Progress : public TrainerCallback {
 public:
  Progress(bool enabled, int64_t total_steps);
  void on_train_begin(int64_t start_step) override { first_ = start_step; }
  void on_step_end(const StepRecord& r, int64_t tokens_per_step) override;
  void on_train_end() override;

 private:
  bool enabled_;
  int64_t total_, first_ = 0;
  double seconds_ = 0;
};

}  // namespace mp::train
