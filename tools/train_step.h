// One optimizer step: the code `train`, `bench` and the memory planner
// (tools/memory_plan.h) share, so that a plan is the step itself.
//
//   for each of grad_accum micro-batches: loss = model.loss(batch); (loss / grad_accum).backward()
//   clip the global gradient norm (or just measure it); AdamW update; drop the gradients
//
// It tells the Ledger which phase it is in (forward, backward, clip,
// optimizer), so that the peak of a step can be located.
#pragma once
#include <functional>
#include <vector>

#include "nn/optimizer.h"
#include "tools/trainer.h"

namespace mp::tools {

struct StepOutcome {
  double loss = 0;       // the mean over micro-batches (NaN on the meta device: no values)
  double grad_norm = 0;  // before clipping (NaN on meta)
};

// `batch(micro)` gives micro-batch `micro` (ids (B, T) i32, and labels and mask for pairs); `check_loss`
// (optional) sees each micro-batch's loss before its backward and may throw.
// The norm is that of the optimizer's parameters' gradients; clip = 0
// measures it only.
StepOutcome train_step(const TrainedModel& m, nn::Optimizer& opt, double clip, int64_t grad_accum,
                       const std::function<Batch(int64_t micro)>& batch,
                       const std::function<void(double loss)>& check_loss = {});

}  // namespace mp::tools
