#include "train/progress.h"

#include <fmt/format.h>

#include <cstdio>

#include "train/trainer.h"

namespace mp::train {

Progress::Progress(bool enabled, int64_t total_steps) : enabled_(enabled), total_(total_steps) {}

void Progress::on_step_end(const StepRecord& r, int64_t tokens_per_step) {
  seconds_ += r.seconds;
  if (!enabled_) return;
  int64_t done = r.step - first_;
  double per_step = seconds_ / double(done);
  int eta = int(per_step * double(total_ - r.step));
  std::string line = fmt::format("\rstep {}/{} | loss {:.4f} | {:.0f} tok/s | mem {} MiB | ETA {}m{:02d}s", r.step,
                                 total_, r.loss, double(tokens_per_step) / per_step,
                                 r.mem_bytes >> 20, eta / 60, eta % 60);
  if (r.val_loss >= 0) line += fmt::format(" | val {:.4f}", r.val_loss);
  std::fputs((line + "\033[K").c_str(), stderr);
}

void Progress::on_train_end() {
  if (enabled_ && seconds_ > 0) std::fputs("\n", stderr);
}

}  // namespace mp::train
