// Activation modules, so that a model can list them as layers. The maths and
// the gradients are in autograd (ag::gelu, ag::relu).
#pragma once
#include "autograd/ops.h"
#include "nn/module.h"

namespace mp::nn {

// GELU with the tanh approximation (GPT-2's "gelu_new"):
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
struct GELU : Module {
  Variable forward(const Variable& x) const { return ag::gelu(x); }
};

// max(x, 0)
struct ReLU : Module {
  Variable forward(const Variable& x) const { return ag::relu(x); }
};

}  // namespace mp::nn
