#include "train/memory_plan.h"

#include <algorithm>
#include <chrono>
#include <tuple>

#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/process_memory.h"

#include "parallel/communicator.h"
#include "parallel/grad_sync.h"
#include "train/train_step.h"

namespace mp::train {

// Build the run's model on `device`, reset the peaks, run two steps on ids
// of zeros (values never matter to memory), read `device`'s account (then
// run `timed_steps` more, timed), less what was allocated there before (a
// caller's tensors are not the run's). The allocator's cache is emptied
// before and after the model is built, so that the steps start from the same
// cache on every device whatever ran before.
static MemoryPlan run_steps(const TrainConfig& config, const models::Tokenizer& tokenizer, Device device,
                            int timed_steps, int ranks = 1) {
  config.validate();
  const size_t fixed = fixed_process_bytes();  // measured before the first model this process builds
  Ledger& ledger = Ledger::instance();
  backend(device).empty_cache();
  ledger.reset_peaks();
  TagBytes before{};
  for (int t = 0; t < kTags; ++t) before[size_t(t)] = ledger.current(Tag(t), device);
  const size_t before_total = ledger.current_total(device), before_reserved = ledger.reserved(device);
  TrainConfig on_device = config;
  on_device.device = device;
  TrainedModel m = build_model(on_device, tokenizer);
  check_sequence_fits(config, *m.base);
  // Data parallel (planned on meta only): rank 0 of `ranks`, its gradient
  // buckets and, with ZeRO-1, its shard of AdamW's state.
  std::unique_ptr<parallel::Communicator> comm = ranks > 1 ? parallel::planning(ranks) : parallel::single_process();
  const std::vector<nn::NamedParameter> params = trainable_parameters(m.module());
  std::unique_ptr<nn::Optimizer> optimizer = make_optimizer(config, params, *comm);
  nn::Optimizer& opt = *optimizer;
  std::unique_ptr<parallel::GradSync> sync =
      ranks > 1 ? std::make_unique<parallel::GradSync>(*comm, params, !config.recompute) : nullptr;
  const size_t setup_peak = ledger.peak_total(device) - before_total;
  const size_t setup_reserved_peak = ledger.peak_reserved(device) - before_reserved;
  backend(device).empty_cache();
  ledger.reset_peaks();
  const std::vector<Batch> micro(size_t(config.grad_accum), Tensor::zeros({config.batch, config.seq}, DType::i32, device));
  // Two steps: AdamW makes its state during the first step's update, so only
  // from the second on is it alive through forward and backward (for full
  // fine-tuning, twice the weights more at the peak). Every later step is the
  // second again.
  for (int step = 0; step < 2; ++step) train_step(m, opt, micro, {.clip = config.clip, .sync = sync.get()});
  MemoryPlan plan;
  plan.device = config.device;
  plan.peak_total = ledger.peak_total(device) - before_total;
  plan.setup_peak = setup_peak;
  plan.reserved_peak = ledger.peak_reserved(device) - before_reserved;
  plan.setup_reserved_peak = setup_reserved_peak;
  plan.fixed_bytes = fixed;
  plan.rss_bytes = fixed + std::max(plan.peak_total, setup_peak);
  plan.at_peak = ledger.peak_moment(device);
  for (size_t t = 0; t < kTags; ++t) {
    plan.at_peak.by_tag[t] -= before[t];
    plan.tag_peaks[t] = ledger.peak(Tag(t), device) - before[t];
  }
  std::tie(plan.trainable_params, plan.all_params) = m.trainable_and_all_parameters();
  plan.storage = models::base_storage(*m.base);
  if (timed_steps > 0) {  // after the account is read: the plan is of the same two steps
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < timed_steps; ++i) train_step(m, opt, micro, {.clip = config.clip});
    plan.step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / timed_steps;
  }
  return plan;
}

size_t MemoryPlan::device_bytes() const {
  return device.type == DeviceType::cuda ? std::max(reserved_peak, setup_reserved_peak) : rss_bytes;
}

Device plan_device(Device device) { return device.type == DeviceType::cuda ? kMetaCuda : kMeta; }

MemoryPlan plan_training_memory(const TrainConfig& config, const models::Tokenizer& tokenizer, int ranks) {
  return run_steps(config, tokenizer, plan_device(config.device), 0, ranks);
}

MemoryPlan measure_training_memory(const TrainConfig& config, const models::Tokenizer& tokenizer, int timed_steps) {
  return run_steps(config, tokenizer, config.device, timed_steps);
}

size_t fixed_process_bytes() {
  static const size_t fixed = [] {
    for (DType dt : {DType::f32, DType::bf16}) {
      const Tensor a = Tensor::zeros({64, 64}, dt, kCPU, Tag::workspace);  // (64, 64)
      ops::matmul(a, a);
    }
    backend(kCPU).empty_cache();
    return resident_bytes();
  }();
  return fixed;
}

int64_t largest_fitting_batch(TrainConfig config, const models::Tokenizer& tokenizer, size_t budget, int ranks) {
  auto fits = [&](int64_t batch) {
    config.batch = batch;
    return plan_training_memory(config, tokenizer, ranks).device_bytes() <= budget;
  };
  if (!fits(1)) return 0;
  // Peak memory grows with the batch: double until it does not fit, then bisect.
  int64_t lo = 1, hi = 2;
  while (hi * config.seq <= (int64_t(1) << 24) && fits(hi)) lo = hi, hi *= 2;
  if (hi * config.seq > (int64_t(1) << 24)) return lo;  // TrainConfig's own limit on B x T
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
}

}  // namespace mp::train
