// A test hook that makes kill-and-resume tests deterministic (no timing
// races). With MP_TRAIN_KILL_AT=<point>:<step> in the environment, the
// trainer kills itself at that point of that step:
//
//   after-log:K          after step K's log line is written, before its checkpoint
//   in-checkpoint:K      halfway through writing step K's checkpoint: a file
//                        size limit makes the kernel kill the process (SIGXFSZ)
//                        when the temporary file reaches half its size
//   after-checkpoint:K   after step K's checkpoint is in place
//
// Unset, the hook does nothing. In a data-parallel run (mpirun) every rank
// reads it; MP_TRAIN_KILL_RANK=<r> arms it on rank r alone.
#pragma once
#include <cstddef>
#include <cstdint>

#include "train/callbacks.h"
#include "train/trainer.h"

namespace mp::train {

enum class KillPoint { after_log, in_checkpoint, after_checkpoint };

class KillHook : public TrainerCallback {
 public:
  // From MP_TRAIN_KILL_AT (and MP_TRAIN_KILL_RANK) for the process of rank
  // `rank`; mp::Error naming the variable for a malformed value.
  static KillHook from_env(int rank = 0);
  // SIGKILL this process if the hook names `point` of `step`.
  void at(KillPoint point, int64_t step) const;
  // Before writing step `step`'s checkpoint of `bytes` bytes: if the hook
  // names in-checkpoint of that step, no file may grow past bytes / 2.
  void before_checkpoint(int64_t step, size_t bytes) const;

  void on_step_end(const StepRecord& rec, int64_t) override { at(KillPoint::after_log, rec.step); }
  void on_save(int64_t step, size_t bytes) override { before_checkpoint(step, bytes); }
  void on_saved(int64_t step) override { at(KillPoint::after_checkpoint, step); }

 private:
  bool armed_ = false;
  KillPoint point_ = KillPoint::after_log;
  int64_t step_ = 0;
};

}  // namespace mp::train
