// One optimizer step: the code `train`, `bench` and the memory planner
// (tools/memory_plan.h) share, so that a plan is the step itself.
//
//   for each of grad_accum micro-batches: loss = model.loss(batch); (loss / grad_accum).backward()
//   data parallel: the gradients averaged over the ranks (dist/grad_sync.h),
//     started during the last micro-batch's backward
//   clip the global gradient norm (or just measure it); AdamW update; drop the gradients
//
// It tells the Ledger which phase it is in (forward, backward, clip,
// optimizer), so that the peak of a step can be located.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "dist/grad_sync.h"
#include "nn/optimizer.h"
#include "tools/trainer.h"

namespace mp::tools {

// The run's optimizer: AdamW, or with config.zero == 1 AdamW with its state
// sharded across comm's ranks (dist/zero_adamw.h).
std::unique_ptr<nn::Optimizer> make_optimizer(const TrainConfig& config, const std::vector<nn::NamedParameter>& params,
                                              dist::Communicator& comm);

struct StepOutcome {
  double loss = 0;       // the mean over micro-batches (NaN on the meta device: no values)
  double grad_norm = 0;  // before clipping (NaN on meta)
};

// `batch(micro)` gives micro-batch `micro` (ids (B, T) i32, and labels and mask for pairs); `check_loss`
// (optional) sees each micro-batch's loss before its backward and may throw.
// The norm is that of the optimizer's parameters' gradients; clip = 0
// measures it only. `sync` (data parallel; null in one process) averages
// the gradients over the ranks; the loss returned is this rank's.
StepOutcome train_step(const TrainedModel& m, nn::Optimizer& opt, double clip, int64_t grad_accum,
                       const std::function<Batch(int64_t micro)>& batch,
                       const std::function<void(double loss)>& check_loss = {}, dist::GradSync* sync = nullptr);

}  // namespace mp::tools
