// Activation recompute for layers that use Dropout. ag::recompute runs a
// block's forward twice (once now, once during backward); Dropout draws a
// new seed on every call, so the replay must see the RngState the first run
// saw, or its masks would differ. nn::recompute arranges that.
//
//   x = nn::recompute([&](const std::vector<Variable>& in) { return block->forward(in[0]); }, {x});
#pragma once
#include <vector>

#include "autograd/recompute.h"

namespace mp::nn {

ag::Variable recompute(ag::RecomputeFn fn, const std::vector<ag::Variable>& inputs);

}  // namespace mp::nn
