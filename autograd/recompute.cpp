#include "autograd/recompute.h"

#include <memory>

#include "autograd/autocast.h"

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

  const DType compute = autocast_dtype();  // backward runs outside the forward's AutocastScope
  CastCache* cache = autocast_cache();

  auto node = std::make_shared<Node>();
  node->name = "recompute";
  node->shape = value.shape();
  for (const Variable& v : inputs) node->inputs.push_back(edge_to(v));
  node->backward = [fn = std::move(fn), saved, wanted, compute, cache](const Tensor& gout, std::span<Tensor> gin) {
    Tag in_flight = current_tag();  // the tag of gradients in flight (workspace)
    // backward() runs under NoGrad; the recompute must record its graph.
    EnableGrad enable;
    TagScope tag(Tag::activations);  // what it recomputes are activations again
    AutocastScope cast(compute, cache);  // the replay computes as the first run did
    std::vector<Variable> fresh;     // the inputs, cut from the outer graph
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
