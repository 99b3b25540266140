#include "train/train_step.h"

#include <limits>

#include "autograd/ops.h"
#include "parallel/zero_adamw.h"
#include "nn/adamw.h"
#include "nn/clip_grad.h"

namespace mp::tools {

std::unique_ptr<nn::Optimizer> make_optimizer(const TrainConfig& config, const std::vector<nn::NamedParameter>& params,
                                              dist::Communicator& comm) {
  const nn::AdamWOptions options{.lr = config.effective_lr(), .weight_decay = config.weight_decay};
  if (config.zero == 1) return std::make_unique<dist::ZeroAdamW>(comm, params, options);
  return std::make_unique<nn::AdamW>(params, options);
}

std::vector<double> micro_batch_weights(const std::vector<Batch>& micro, dist::Communicator& comm) {
  if (micro.empty() || !micro.front().labels.defined()) return {};
  std::vector<double> w;
  double here = 0;
  for (const Batch& b : micro) here += w.emplace_back(double(b.targets()));
  const double all = comm.size() > 1 ? dist::all_reduce_sum(comm, here) : here;
  for (double& n : w) n = all > 0 ? n * double(comm.size()) * double(micro.size()) / all : 0;
  return w;
}

StepOutcome train_step(const TrainedModel& m, nn::Optimizer& opt, double clip, int64_t grad_accum,
                       const std::function<Batch(int64_t micro)>& batch,
                       const std::function<void(double loss)>& check_loss, dist::GradSync* sync,
                       const std::vector<double>& weights) {
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
      loss_sum += weights.empty() ? value : weights[size_t(micro)] * value;
    }
    ledger.set_phase("backward");
    const float scale = weights.empty() ? 1.f / float(grad_accum) : float(weights[size_t(micro)] / double(grad_accum));
    ag::Variable scaled = scale != 1.f ? ag::scale(loss, scale) : loss;
    if (sync && micro == grad_accum - 1) scaled.backward([sync](const ag::VarImpl& leaf) { sync->grad_final(leaf); });
    else scaled.backward();
  }
  if (sync) {
    ledger.set_phase("all-reduce");
    sync->finish();
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
