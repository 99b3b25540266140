#include "nn/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/error.h"

namespace mp::nn {

LrSchedule::LrSchedule(Kind kind, int64_t warmup, int64_t total, double min_lr_ratio, double num_cycles)
    : kind_(kind), warmup_(warmup), total_(total), min_lr_ratio_(min_lr_ratio), num_cycles_(num_cycles) {
  if (warmup < 0) fail("LR schedule: warmup_steps must be >= 0, not {}", warmup);
  if (kind != Kind::constant && total < 0) fail("LR schedule: total_steps must be >= 0, not {}", total);
  if (!(min_lr_ratio >= 0 && min_lr_ratio <= 1)) fail("LR schedule: min_lr_ratio must be in [0, 1], not {}", min_lr_ratio);
}

LrSchedule LrSchedule::constant(int64_t warmup_steps) { return {Kind::constant, warmup_steps, 0, 0.0, 0.0}; }

LrSchedule LrSchedule::linear(int64_t warmup_steps, int64_t total_steps) {
  return {Kind::linear, warmup_steps, total_steps, 0.0, 0.0};
}

LrSchedule LrSchedule::cosine(int64_t warmup_steps, int64_t total_steps, double min_lr_ratio, double num_cycles) {
  return {Kind::cosine, warmup_steps, total_steps, min_lr_ratio, num_cycles};
}

LrSchedule LrSchedule::from_name(std::string_view name, int64_t warmup_steps, int64_t total_steps,
                                 double min_lr_ratio) {
  if (name == "constant") return constant(warmup_steps);
  if (name == "linear") return linear(warmup_steps, total_steps);
  if (name == "cosine") return cosine(warmup_steps, total_steps, min_lr_ratio);
  fail("unknown LR schedule '{}' (expected constant, linear or cosine)", name);
}

double LrSchedule::multiplier(int64_t step) const {
  if (step < warmup_) return double(step) / double(std::max<int64_t>(1, warmup_));
  switch (kind_) {
    case Kind::constant: return 1.0;
    case Kind::linear:
      return std::max(0.0, double(total_ - step) / double(std::max<int64_t>(1, total_ - warmup_)));
    case Kind::cosine: {
      double progress = double(step - warmup_) / double(std::max<int64_t>(1, total_ - warmup_));
      double c = 0.5 * (1.0 + std::cos(std::numbers::pi * 2.0 * num_cycles_ * progress));
      return std::max(0.0, c * (1.0 - min_lr_ratio_) + min_lr_ratio_);
    }
  }
  return 1.0;
}

std::string LrSchedule::describe() const {
  switch (kind_) {
    case Kind::constant: return fmt::format("constant(warmup={})", warmup_);
    case Kind::linear: return fmt::format("linear(warmup={}, total={})", warmup_, total_);
    case Kind::cosine:
      return fmt::format("cosine(warmup={}, total={}, min_lr_ratio={})", warmup_, total_, min_lr_ratio_);
  }
  return "?";
}

}  // namespace mp::nn
