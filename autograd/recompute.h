// Activation recompute (gradient checkpointing): trade compute for memory.
//
//   h = recompute([&](const std::vector<Variable>& in) { return block(in[0]); }, {x});
//
// The forward runs `fn` without recording a graph, so none of its
// intermediate activations are kept: the node saves only the inputs. When
// backward() reaches the node it runs `fn` again, this time recording, on
// detached copies of the inputs, and backpropagates the incoming gradient
// through that fresh subgraph, which is freed right after. Peak memory is
// then one block's activations instead of every block's.
//
// The replay runs under the thread state (engine/thread_state.h) of the
// first run (its autocast dtype and cache, weight dtype, device), so it
// computes the same values even though backward() is usually called outside
// the forward's scopes; only the tag (activations) and grad mode (on) differ.
//
// Rules for fn:
//  - it must be deterministic (dropout is: its mask comes from a seed);
//  - every non-leaf Variable it uses must come in through `inputs`; Variables
//    it captures itself must be leaves (parameters). Their gradients
//    accumulate when the recomputed subgraph is backpropagated, as usual.
// Because fn's parameters are invisible here, the output records a node
// whenever grad mode is on, even if no input needs a gradient (a frozen
// model's first block with trainable LoRA weights inside).
#pragma once
#include <functional>
#include <vector>

#include "autograd/variable.h"

namespace mp::ag {

using RecomputeFn = std::function<Variable(const std::vector<Variable>&)>;

Variable recompute(RecomputeFn fn, const std::vector<Variable>& inputs);

}  // namespace mp::ag
