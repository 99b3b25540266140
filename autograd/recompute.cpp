#include "autograd/recompute.h"

#include <memory>


namespace mp::ag {

Variable recompute(RecomputeFn fn, const std::vector<Variable>& inputs) {
  if (!grad_enabled()) return fn(inputs);  // nothing to save: just run it

  // Forward without a graph: fn's intermediate activations die as it goes.
  Tensor value;
  {
    NoGrad no_grad;
    value = fn(inputs).value();
  }

  // Save the inputs' values (fn needs them all to run again) and which
  // inputs want a gradient.
  std::vector<Tensor> saved;
  std::vector<bool> wanted;
  for (const Variable& v : inputs) {
    saved.push_back(v.value());
    wanted.push_back(needs_grad(v));
  }

  // The replay runs as the first run did (autocast, weight dtype, device),
  // recording a graph (backward() runs under NoGrad) of activations.
  ThreadState replay = thread_state();
  replay.grad_enabled = true;
  replay.tag = Tag::activations;

  auto node = std::make_shared<Node>();
  node->name = "recompute";
  node->shape = value.shape();
  for (const Variable& v : inputs) node->inputs.push_back(edge_to(v));
  node->backward = [fn = std::move(fn), saved, wanted, replay](const Tensor& gout, std::span<Tensor> gin) {
    Tag in_flight = current_tag();  // the tag of gradients in flight (workspace)
    StateScope state(replay);
    std::vector<Variable> fresh;  // the inputs, cut from the outer graph
    for (size_t i = 0; i < saved.size(); ++i) {
      fresh.emplace_back(saved[i], bool(wanted[i]));
      fresh.back().impl()->grad_tag = in_flight;  // their gradients are in flight, not parameters'
    }
    Variable out = fn(fresh);
    if (!out.requires_grad()) return;  // fn's parameters are all frozen and no input wants a gradient
    out.backward(gout);                // a nested sweep: frees the recomputed graph as it goes
    for (size_t i = 0; i < saved.size(); ++i) {
      if (!wanted[i] || !fresh[i].grad().defined()) continue;
      gin[i] = std::move(fresh[i].impl()->grad);
    }
  };
  Variable out(std::move(value), true);
  out.impl()->node = std::move(node);
  return out;
}

}  // namespace mp::ag
