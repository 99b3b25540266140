// Gradient clipping by total norm (torch.nn.utils.clip_grad_norm_).
#pragma once
#include <vector>

#include "nn/module.h"

namespace mp::nn {

// The L2 norm of all gradients taken together, accumulated in f64, as a
// (1) f64 tensor on their device: nothing is read on the host (the trainer
// reads it with the step's losses, one copy). Parameters without a gradient
// are skipped.
Tensor grad_norm_tensor(const std::vector<Variable>& params);

// If that norm exceeds max_norm, scale every gradient by
// max_norm / (norm + 1e-6), on the device. Returns the norm before clipping.
Tensor clip_grad_norm_tensor(const std::vector<Variable>& params, double max_norm);

// The same, the norm read on the host (0 on the meta device: no values).
double grad_norm(const std::vector<Variable>& params);
double clip_grad_norm(const std::vector<Variable>& params, double max_norm);
double clip_grad_norm(const std::vector<NamedParameter>& params, double max_norm);

}  // namespace mp::nn
