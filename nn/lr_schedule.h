// Learning-rate schedules, as the multiplier of the base LR at each step
// (Hugging Face transformers' get_*_schedule_with_warmup, which are
// torch LambdaLR lambdas). `step` counts optimizer steps from 0: step k uses
// lr = base_lr * multiplier(k).
//
//   constant:  1 (after a linear warmup, if any)
//   linear:    warmup 0 -> 1, then linearly down to 0 at total_steps
//   cosine:    warmup 0 -> 1, then half a cosine down to min_lr_ratio
//
// Warmup: multiplier(step) = step / warmup_steps for step < warmup_steps.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace mp::nn {

class LrSchedule {
 public:
  enum class Kind { constant, linear, cosine };

  static LrSchedule constant(int64_t warmup_steps = 0);
  // get_linear_schedule_with_warmup:
  //   max(0, (total - step) / max(1, total - warmup)) after warmup.
  static LrSchedule linear(int64_t warmup_steps, int64_t total_steps);
  // get_cosine_schedule_with_warmup (num_cycles 0.5), and with min_lr_ratio > 0
  // get_cosine_with_min_lr_schedule_with_warmup (min_lr_rate):
  //   progress = (step - warmup) / max(1, total - warmup)
  //   c = 0.5 * (1 + cos(pi * 2 * num_cycles * progress))
  //   max(0, c * (1 - min_lr_ratio) + min_lr_ratio)
  static LrSchedule cosine(int64_t warmup_steps, int64_t total_steps, double min_lr_ratio = 0.0,
                           double num_cycles = 0.5);
  // "constant", "linear" or "cosine" (mp::Error naming the others).
  static LrSchedule from_name(std::string_view name, int64_t warmup_steps, int64_t total_steps,
                              double min_lr_ratio = 0.0);

  double multiplier(int64_t step) const;
  double lr(double base_lr, int64_t step) const { return base_lr * multiplier(step); }

  Kind kind() const { return kind_; }
  int64_t warmup_steps() const { return warmup_; }
  int64_t total_steps() const { return total_; }
  std::string describe() const;  // "cosine(warmup=100, total=1000, min_lr_ratio=0.1)"

 private:
  LrSchedule(Kind kind, int64_t warmup, int64_t total, double min_lr_ratio, double num_cycles);
  Kind kind_;
  int64_t warmup_, total_;
  double min_lr_ratio_, num_cycles_;
};

}  // namespace mp::nn
