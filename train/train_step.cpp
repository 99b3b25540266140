#include "train/train_step.h"

#include <limits>

#include "autograd/ops.h"
#include "engine/ops.h"
#include "parallel/zero_adamw.h"
#include "nn/adamw.h"
#include "nn/clip_grad.h"

namespace mp::train {

std::unique_ptr<nn::Optimizer> make_optimizer(const TrainConfig& config, const std::vector<nn::NamedParameter>& params,
                                              parallel::Communicator& comm) {
  const nn::AdamWOptions options{.lr = config.effective_lr(), .weight_decay = config.weight_decay};
  if (config.zero == 1) return std::make_unique<parallel::ZeroAdamW>(comm, params, options);
  return std::make_unique<nn::AdamW>(params, options);
}

std::vector<double> micro_batch_weights(const std::vector<Batch>& micro, parallel::Communicator& comm) {
  if (micro.empty() || !micro.front().labels.defined()) return {};
  std::vector<double> w;
  double here = 0;
  for (const Batch& b : micro) here += w.emplace_back(double(b.targets()));
  const double all = comm.size() > 1 ? parallel::all_reduce_sum(comm, here) : here;
  for (double& n : w) n = all > 0 ? n * double(comm.size()) * double(micro.size()) / all : 0;
  return w;
}

StepOutcome train_step(const TrainedModel& m, nn::Optimizer& opt, const std::vector<Batch>& micro,
                       const StepOptions& o) {
  Ledger& ledger = Ledger::instance();
  const int64_t grad_accum = int64_t(micro.size());
  bool meta = false;  // a loss on the meta device has no value to read
  std::vector<Tensor> numbers;  // (1) f64 each: every micro-batch's loss, then the norm; read once, at the end
  for (int64_t k = 0; k < grad_accum; ++k) {
    ledger.set_phase("forward");
    ag::Variable loss = m.loss(micro[size_t(k)]);  // ids (B, T)
    meta = loss.value().device().is_meta();
    numbers.push_back(loss.value().to(DType::f64));
    ledger.set_phase("backward");
    const double w = o.weights.empty() ? 1.0 : o.weights[size_t(k)];
    const float scale = float(w / double(grad_accum));
    ag::Variable scaled = scale != 1.f ? ag::scale(loss, scale) : loss;
    if (o.sync && k == grad_accum - 1) scaled.backward([&o](const ag::VarImpl& leaf) { o.sync->grad_final(leaf); });
    else scaled.backward();
  }
  if (o.sync) {
    ledger.set_phase("all-reduce");
    o.sync->finish();
  }
  ledger.set_phase("clip");
  std::vector<ag::Variable> params;
  for (const auto& [name, p] : opt.params()) params.push_back(p);
  numbers.push_back(o.clip > 0 ? nn::clip_grad_norm_tensor(params, o.clip) : nn::grad_norm_tensor(params));
  ledger.set_phase("optimizer");
  opt.step();
  opt.zero_grad();
  ledger.set_phase("");
  Tensor on_device = ops::cat(numbers, 0);  // (grad_accum + 1) f64
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  if (meta) return {nan, nan, {}};
  // The one copy to the host of the step (on a GPU, its one wait).
  const Tensor read = on_device.to(kCPU);
  const double* v = read.data<double>();
  StepOutcome out;
  for (int64_t k = 0; k < grad_accum; ++k) {
    const double value = v[k];
    if (o.check_loss) o.check_loss(value);
    out.losses.push_back(value);
    out.loss += (o.weights.empty() ? 1.0 : o.weights[size_t(k)]) * value;
  }
  out.loss /= double(grad_accum);
  out.grad_norm = v[grad_accum];
  return out;
}

}  // namespace mp::train
