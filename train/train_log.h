// out_dir/log.jsonl: one JSON line per training step, kept in step with the
// checkpoint however the run is stopped. The trainer appends a step's line
// before the checkpoint that covers it and sync()s the log before each
// checkpoint, so the log always reaches at least the checkpoint's step; a
// resumed run first cuts the log back to the checkpoint's step. After any
// kill and resume, every step appears exactly once.
#pragma once
#include <cstdint>
#include <string>

#include "train/callbacks.h"
#include "train/trainer.h"

namespace mp::train {

class TrainLog {
 public:
  TrainLog() = default;  // closed: writes nothing
  // A fresh log at `path` (an old one is truncated).
  static TrainLog create(const std::string& path);
  // The log of a run resumed after `step`: only the lines of steps <= step
  // are kept (rewritten atomically; a torn last line from a kill mid-write is
  // dropped), and new lines follow them. No log at `path`: an empty one.
  static TrainLog resume(const std::string& path, int64_t step);
  TrainLog(const TrainLog&) = delete;
  TrainLog& operator=(const TrainLog&) = delete;
  TrainLog(TrainLog&& o) noexcept;
  TrainLog& operator=(TrainLog&& o) noexcept;
  ~TrainLog();

  bool is_open() const { return fd_ >= 0; }
  // One line, written straight to the file (no user-space buffer): it is
  // there even if the process is killed right after.
  void append(const StepRecord& r);
  // fsync: the lines so far survive a crash of the machine too.
  void sync();

 private:
  TrainLog(const std::string& path, int open_flags);
  std::string path_;
  int fd_ = -1;
};

// The log as a train() callback (train/callbacks.h): opened when training
// begins (a resumed run's cut back to the step it continues after), a line
// per step, synced before each checkpoint.
class TrainLogCallback : public TrainerCallback {
 public:
  TrainLogCallback(std::string path, bool resume) : path_(std::move(path)), resume_(resume) {}
  void on_train_begin(int64_t start_step) override {
    log_ = resume_ ? TrainLog::resume(path_, start_step) : TrainLog::create(path_);
  }
  void on_step_end(const StepRecord& rec, int64_t) override { log_.append(rec); }
  void on_save(int64_t, size_t) override { log_.sync(); }

 private:
  std::string path_;
  bool resume_;
  TrainLog log_;
};

}  // namespace mp::train
