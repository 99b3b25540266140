// Gradient clipping by total norm (torch.nn.utils.clip_grad_norm_).
#pragma once
#include <vector>

#include "nn/module.h"

namespace mp::nn {

// The L2 norm of all gradients taken together, accumulated in f64.
// Parameters without a gradient are skipped.
double grad_norm(const std::vector<Variable>& params);

// If that norm exceeds max_norm, scale every gradient by
// max_norm / (norm + 1e-6). Returns the norm before clipping.
double clip_grad_norm(const std::vector<Variable>& params, double max_norm);
double clip_grad_norm(const std::vector<NamedParameter>& params, double max_norm);

}  // namespace mp::nn
