#include "train/memory_plan.h"

#include <chrono>
#include <tuple>

#include "parallel/communicator.h"
#include "parallel/grad_sync.h"
#include "train/train_step.h"

namespace mp::train {

// Build the run's model on `device`, reset the peaks, run two steps (then
// `timed_steps` more, timed) on ids of zeros (values never matter to memory),
// and read `device`'s account, less what was allocated there before (a
// caller's tensors are not the run's).
static MemoryPlan run_steps(const TrainConfig& config, const models::Tokenizer& tokenizer, Device device,
                            int timed_steps, int ranks = 1) {
  config.validate();
  Ledger& ledger = Ledger::instance();
  TagBytes before{};
  for (int t = 0; t < kTags; ++t) before[size_t(t)] = ledger.current(Tag(t), device);
  const size_t before_total = ledger.current_total(device);
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
  ledger.reset_peaks();
  const std::vector<Batch> micro(size_t(config.grad_accum), Tensor::zeros({config.batch, config.seq}, DType::i32, device));
  // Two steps: AdamW makes its state during the first step's update, so only
  // from the second on is it alive through forward and backward (for full
  // fine-tuning, twice the weights more at the peak). Every later step is the
  // second again.
  for (int step = 0; step < 2; ++step) train_step(m, opt, micro, {.clip = config.clip, .sync = sync.get()});
  MemoryPlan plan;
  if (timed_steps > 0) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < timed_steps; ++i) train_step(m, opt, micro, {.clip = config.clip});
    plan.step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / timed_steps;
  }
  plan.peak_total = ledger.peak_total(device) - before_total;
  plan.at_peak = ledger.peak_moment(device);
  for (size_t t = 0; t < kTags; ++t) {
    plan.at_peak.by_tag[t] -= before[t];
    plan.tag_peaks[t] = ledger.peak(Tag(t), device) - before[t];
  }
  std::tie(plan.trainable_params, plan.all_params) = m.trainable_and_all_parameters();
  plan.storage = models::base_storage(*m.base);
  return plan;
}

MemoryPlan plan_training_memory(const TrainConfig& config, const models::Tokenizer& tokenizer, int ranks) {
  return run_steps(config, tokenizer, kMeta, 0, ranks);
}

MemoryPlan measure_training_memory(const TrainConfig& config, const models::Tokenizer& tokenizer, int timed_steps) {
  return run_steps(config, tokenizer, kCPU, timed_steps);
}

int64_t largest_fitting_batch(TrainConfig config, const models::Tokenizer& tokenizer, size_t budget, int ranks) {
  auto fits = [&](int64_t batch) {
    config.batch = batch;
    return plan_training_memory(config, tokenizer, ranks).peak_total <= budget;
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
