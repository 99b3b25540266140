// SGD with momentum (torch.optim.SGD). For each parameter p with gradient g:
//   d = g + weight_decay * p
//   buf = d on the first step, then buf = momentum * buf + (1 - dampening) * d
//   d = nesterov ? d + momentum * buf : buf          (when momentum != 0)
//   p -= lr * d
#pragma once
#include "nn/optimizer.h"

namespace mp::nn {

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  explicit SGD(const std::vector<NamedParameter>& params, const SGDOptions& options = {});
  const SGDOptions& options() const { return options_; }

 private:
  void update(Slot& slot) override;
  SGDOptions options_;
};

}  // namespace mp::nn
