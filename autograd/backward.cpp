// The reverse-mode sweep: Variable::backward().
#include <unordered_map>
#include <unordered_set>

#include "autograd/variable.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace mp::ag {

// Every Variable reachable from root that has a Node, ordered so that each
// comes before the Variables it was made from (iterative DFS: graphs of
// deep models would overflow a recursive one).
static std::vector<VarImpl*> reverse_topological_order(VarImpl* root) {
  std::vector<VarImpl*> post_order;
  std::unordered_set<VarImpl*> visited;
  std::vector<std::pair<VarImpl*, size_t>> stack;  // (variable, next input to visit)
  if (root->node) stack.push_back({root, 0});
  visited.insert(root);
  while (!stack.empty()) {
    auto& [v, next] = stack.back();
    if (next < v->node->inputs.size()) {
      VarImpl* in = v->node->inputs[next++].get();
      if (in && in->node && visited.insert(in).second) stack.push_back({in, 0});
    } else {
      post_order.push_back(v);
      stack.pop_back();
    }
  }
  return {post_order.rbegin(), post_order.rend()};
}

// Leaf gradients live under Tag::grads. A fresh gradient nobody else holds
// is adopted (retagged) instead of copied.
static void accumulate_leaf_grad(VarImpl& leaf, Tensor g) {
  if (leaf.grad.defined()) {
    ops::axpby(1.f, g, 1.f, leaf.grad);
  } else if (g.storage().use_count() == 1 && g.is_contiguous() && g.offset() == 0 &&
             g.storage()->bytes() == g.nbytes()) {
    g.storage()->retag(Tag::grads);
    leaf.grad = std::move(g);
  } else {
    leaf.grad = g.clone(Tag::grads);
  }
}

static void accumulate(std::unordered_map<VarImpl*, Tensor>& grads, VarImpl* v, Tensor g) {
  if (g.shape() != v->value.shape())
    fail("autograd: gradient of shape {} for a value of shape {}", shape_str(g.shape()), shape_str(v->value.shape()));
  if (!v->node) {
    accumulate_leaf_grad(*v, std::move(g));
    return;
  }
  auto [it, fresh] = grads.try_emplace(v, g);
  if (!fresh) it->second = ops::add(it->second, g);
}

void Variable::backward(const Tensor& grad_output) const {
  if (!impl_->requires_grad) fail("backward() on a Variable that does not require grad");
  TagScope scope(Tag::workspace);  // gradients in flight are workspace
  NoGrad no_grad;                  // backward itself records no graph
  std::unordered_map<VarImpl*, Tensor> grads;
  std::vector<VarImpl*> order = reverse_topological_order(impl_.get());
  accumulate(grads, impl_.get(), grad_output);
  for (VarImpl* v : order) {
    auto it = grads.find(v);
    if (it == grads.end()) continue;  // no gradient reached it
    Tensor gout = std::move(it->second);
    grads.erase(it);
    Node& node = *v->node;
    std::vector<Tensor> gin(node.inputs.size());
    node.backward(gout, gin);
    for (size_t i = 0; i < gin.size(); ++i)
      if (node.inputs[i] && gin[i].defined()) accumulate(grads, node.inputs[i].get(), std::move(gin[i]));
    // Free the graph as we go: the saved tensors and the edges.
    v->node.reset();
  }
}

void Variable::backward() const {
  if (value().numel() != 1) fail("backward() without a gradient needs a one-element value, not shape {}",
                                 shape_str(shape()));
  backward(Tensor::full(shape(), 1.0, value().dtype(), value().device()));
}

}  // namespace mp::ag
