// Hooks into train()'s loop (train/trainer.h), as HF Trainer's
// TrainerCallback: the log.jsonl writer (train/train_log.h), the progress
// line (train/progress.h) and the kill-and-resume test hook
// (train/kill_hook.h) are callbacks, and so can be a user's own:
//
//   struct PrintLoss : train::TrainerCallback {
//     void on_step_end(const train::StepRecord& r, int64_t) override { std::printf("%.4f\n", r.loss); }
//   };
//
// Every rank of a data-parallel run calls its callbacks; rank 0 writes.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mp::train {

struct StepRecord;

class TrainerCallback {
 public:
  virtual ~TrainerCallback() = default;
  // Before the first step; `start_step` is the step a resumed run continues
  // after (0 for a fresh run).
  virtual void on_train_begin(int64_t /*start_step*/) {}
  // After a step, its evaluation included when one ran (rec.val_loss >= 0);
  // `tokens`: the real tokens of the step's global batch.
  virtual void on_step_end(const StepRecord& /*rec*/, int64_t /*tokens*/) {}
  // Before the checkpoint after `step` is written (`bytes` of tensors), and
  // once it is in place.
  virtual void on_save(int64_t /*step*/, size_t /*bytes*/) {}
  virtual void on_saved(int64_t /*step*/) {}
  // After the last step of this run.
  virtual void on_train_end() {}
};

}  // namespace mp::train
