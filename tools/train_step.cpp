#include "tools/train_step.h"

#include <limits>

#include "autograd/ops.h"
#include "nn/clip_grad.h"

namespace mp::tools {

StepOutcome train_step(const TrainedModel& m, nn::Optimizer& opt, double clip, int64_t grad_accum,
                       const std::function<Batch(int64_t micro)>& batch,
                       const std::function<void(double loss)>& check_loss) {
  Ledger& ledger = Ledger::instance();
  bool meta = false;  // a loss on the meta device has no value to read
  double loss_sum = 0;
  for (int64_t micro = 0; micro < grad_accum; ++micro) {
    ledger.set_phase("forward");
    ag::Variable loss = m.loss(batch(micro));  // ids (B, T)
    meta = loss.value().device().is_meta();
    if (!meta) {
      const double value = loss.item();
      if (check_loss) check_loss(value);
      loss_sum += value;
    }
    ledger.set_phase("backward");
    (grad_accum > 1 ? ag::scale(loss, 1.f / float(grad_accum)) : loss).backward();
  }
  ledger.set_phase("clip");
  std::vector<ag::Variable> params;
  for (const auto& [name, p] : opt.params()) params.push_back(p);
  const double norm = clip > 0 ? nn::clip_grad_norm(params, clip) : nn::grad_norm(params);
  ledger.set_phase("optimizer");
  opt.step();
  opt.zero_grad();
  ledger.set_phase("");
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  return meta ? StepOutcome{nan, nan} : StepOutcome{loss_sum / double(grad_accum), norm};
}

}  // namespace mp::tools
