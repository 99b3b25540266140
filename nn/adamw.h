// AdamW (torch.optim.AdamW): Adam with decoupled weight decay.
// For each parameter p with gradient g, at its step t (from 1):
//   p -= lr * weight_decay * p
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
// The update is one fused kernel (Backend::adamw).
#pragma once
#include "nn/optimizer.h"

namespace mp::nn {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
};

class AdamW : public Optimizer {
 public:
  explicit AdamW(const std::vector<NamedParameter>& params, const AdamWOptions& options = {});
  const AdamWOptions& options() const { return options_; }

 private:
  void update(Slot& slot) override;
  AdamWOptions options_;
};

}  // namespace mp::nn
