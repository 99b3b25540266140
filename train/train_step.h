// One optimizer step: the code `train`, `bench` and the memory planner
// (train/memory_plan.h) share, so that a plan is the step itself.
//
//   for each of grad_accum micro-batches: loss = model.loss(batch); (w * loss / grad_accum).backward()
//     w = 1, or for pairs the micro-batch's share of the step's targets (micro_batch_weights)
//   data parallel: the gradients averaged over the ranks (parallel/grad_sync.h),
//     started during the last micro-batch's backward
//   clip the global gradient norm (or just measure it); AdamW update; drop the gradients
//
// It tells the Ledger which phase it is in (forward, backward, clip,
// optimizer), so that the peak of a step can be located. Nothing in it is
// read on the host until the end: the losses and the gradient norm stay on
// the device (clipping included) and come back together, in one copy.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "parallel/grad_sync.h"
#include "nn/optimizer.h"
#include "train/trainer.h"

namespace mp::train {

// The run's optimizer: AdamW, or with config.zero == 1 AdamW with its state
// sharded across comm's ranks (parallel/zero_adamw.h).
std::unique_ptr<nn::Optimizer> make_optimizer(const TrainConfig& config, const std::vector<nn::NamedParameter>& params,
                                              parallel::Communicator& comm);

// Pairs: a micro-batch's loss is the mean over its own targets (completion
// tokens), and their number differs from one micro-batch (and rank) to the
// next. Weighting micro-batch k by
//
//   w_k = n_k * ranks * grad_accum / N      n_k its targets, N the step's on every rank
//
// makes the averaged gradient that of the mean over all N targets: the
// global batch's loss, whatever the split (HF Trainer's num_items_in_batch).
// One all-reduce of a number when comm has several ranks. Empty for text
// windows, where every micro-batch has B (T - 1) targets and w_k = 1.
std::vector<double> micro_batch_weights(const std::vector<Batch>& micro, parallel::Communicator& comm);

struct StepOutcome {
  double loss = 0;             // the weighted mean over micro-batches (NaN on the meta device: no values)
  double grad_norm = 0;        // before clipping (NaN on meta)
  std::vector<double> losses;  // each micro-batch's own loss (empty on meta)
};

struct StepOptions {
  double clip = 1.0;               // clip the gradient norm to this; 0 measures it only
  parallel::GradSync* sync = nullptr;  // data parallel: averages the gradients over the ranks; null in one process
  std::vector<double> weights;     // from micro_batch_weights, or empty (each 1)
  // Sees each micro-batch's loss once the step is done (read with the norm) and may throw (a non-finite loss).
  std::function<void(double loss)> check_loss;
};

// One step over the micro-batches (each ids (B, T) i32, and labels and mask
// for pairs): gradient accumulation over all of them. The norm is that of
// the optimizer's parameters' gradients. Under data parallelism the loss
// returned is this rank's weighted mean (the average over the ranks is the step's).
StepOutcome train_step(const TrainedModel& m, nn::Optimizer& opt, const std::vector<Batch>& micro,
                       const StepOptions& options = {});

}  // namespace mp::train
