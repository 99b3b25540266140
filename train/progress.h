// The one-line progress display of `minipeft train` on a terminal:
//   step 120/1000 | loss 3.2104 | 5,210 tok/s | mem 812 MiB | ETA 2m49s
// Redrawn in place (\r); silent when stderr is not a TTY.
#pragma once
#include <cstdint>

namespace mp::tools {

struct StepRecord;

class Progress {
 public:
  Progress(bool enabled, int64_t total_steps, int64_t first_step);
  void update(const StepRecord& r, int64_t tokens_per_step);
  void finish();

 private:
  bool enabled_;
  int64_t total_, first_;
  double seconds_ = 0;
};

}  // namespace mp::tools
