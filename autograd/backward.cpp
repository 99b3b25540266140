// The reverse-mode sweep: Variable::backward().
#include <unordered_map>
#include <unordered_set>

#include "autograd/variable.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace mp::ag {

// Every Node reachable from root, ordered so that each comes before the
// Nodes that made its inputs (iterative DFS: graphs of deep models would
// overflow a recursive one).
static std::vector<std::shared_ptr<Node>> reverse_topological_order(const std::shared_ptr<Node>& root) {
  std::vector<std::shared_ptr<Node>> post_order;
  std::unordered_set<Node*> visited{root.get()};
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack{{root, 0}};  // (node, next input to visit)
  while (!stack.empty()) {
    auto& [n, next] = stack.back();
    if (next < n->inputs.size()) {
      const std::shared_ptr<Node>& in = n->inputs[next++].node;
      if (in && visited.insert(in.get()).second) stack.push_back({in, 0});
    } else {
      post_order.push_back(std::move(n));
      stack.pop_back();
    }
  }
  return {post_order.rbegin(), post_order.rend()};
}

static void check_shape(const Tensor& g, const Shape& shape, const std::string& what) {
  if (g.shape() != shape)
    fail("autograd: gradient of shape {} for {} of shape {}", shape_str(g.shape()), what, shape_str(shape));
}

// Leaf gradients live under the leaf's grad_tag (Tag::grads for parameters).
// A fresh gradient nobody else holds is adopted (retagged) instead of copied.
static void accumulate_leaf_grad(VarImpl& leaf, Tensor g) {
  check_shape(g, leaf.value.shape(), "a leaf");
  if (leaf.grad.defined()) {
    ops::axpby(1.f, g, 1.f, leaf.grad);
  } else if (g.storage().use_count() == 1 && g.is_contiguous() && g.offset() == 0 &&
             g.storage()->bytes() == g.nbytes()) {
    g.storage()->retag(leaf.grad_tag);
    leaf.grad = std::move(g);
  } else {
    leaf.grad = g.clone(leaf.grad_tag);
  }
}

// Send gradient g along one edge: into a leaf, or summed into the gradient
// waiting for the input's Node (a Variable used twice, e.g. a residual).
static void accumulate(std::unordered_map<Node*, Tensor>& grads, const Edge& edge, Tensor g) {
  if (edge.leaf) {
    accumulate_leaf_grad(*edge.leaf, std::move(g));
    return;
  }
  check_shape(g, edge.node->shape, "the output of " + edge.node->name);
  auto [it, fresh] = grads.try_emplace(edge.node.get(), g);
  if (fresh) return;
  Tensor& sum = it->second;
  // Add in place when nobody else sees the waiting gradient's bytes (not a
  // view of another gradient, not a broadcast); otherwise into a new tensor.
  if (sum.storage().use_count() == 1 && sum.is_contiguous()) ops::axpby(1.f, g, 1.f, sum);
  else sum = ops::add(sum, g);
}

// For each leaf some node sends a gradient to, the position in `order` of
// the last such node: its gradient is complete once that node has run.
static std::unordered_map<VarImpl*, size_t> last_use(const std::vector<std::shared_ptr<Node>>& order) {
  std::unordered_map<VarImpl*, size_t> last;
  for (size_t k = 0; k < order.size(); ++k)
    for (const Edge& e : order[k]->inputs)
      if (e.leaf) last[e.leaf.get()] = k;
  return last;
}

void Variable::backward(const Tensor& grad_output) const { sweep(grad_output, {}); }

void Variable::backward(const GradFinalHook& grad_final) const {
  if (value().numel() != 1) fail("backward() without a gradient needs a one-element value, not shape {}",
                                 shape_str(shape()));
  sweep(Tensor::full(shape(), 1.0, value().dtype(), value().device()), grad_final);
}

void Variable::sweep(const Tensor& grad_output, const GradFinalHook& grad_final) const {
  if (!impl_->requires_grad) fail("backward() on a Variable that does not require grad");
  TagScope scope(Tag::workspace);  // gradients in flight are workspace
  NoGrad no_grad;                  // backward itself records no graph
  if (is_leaf()) {
    accumulate_leaf_grad(*impl_, grad_output);
    if (grad_final) grad_final(*impl_);
    return;
  }
  std::unordered_map<Node*, Tensor> grads;
  std::vector<std::shared_ptr<Node>> order = reverse_topological_order(impl_->node);
  std::unordered_map<VarImpl*, size_t> last = grad_final ? last_use(order) : std::unordered_map<VarImpl*, size_t>{};
  std::vector<std::shared_ptr<VarImpl>> finals;  // the leaves completed by the current node
  accumulate(grads, Edge{impl_->node, nullptr}, grad_output);
  Ledger& ledger = Ledger::instance();
  const std::string_view outer_op = ledger.op();  // a recompute's nested sweep runs inside a node
  for (size_t k = 0; k < order.size(); ++k) {
    std::shared_ptr<Node> node = std::move(order[k]);  // dies at the end of this step unless still referenced
    if (!node->backward) fail("backward() through {} a second time: its graph was freed by the first", node->name);
    ledger.set_op(node->name);  // the ledger's peak names the node running
    auto it = grads.find(node.get());
    if (it != grads.end()) {
      Tensor gout = std::move(it->second);
      grads.erase(it);
      std::vector<Tensor> gin(node->inputs.size());
      node->backward(gout, gin);
      for (size_t i = 0; i < gin.size(); ++i)
        if (node->inputs[i] && gin[i].defined()) accumulate(grads, node->inputs[i], std::move(gin[i]));
    }
    if (grad_final) {
      finals.clear();
      for (const Edge& e : node->inputs) {
        if (!e.leaf) continue;
        size_t& at = last.at(e.leaf.get());
        if (at != k) continue;
        at = order.size();  // reported once, even when this node has it twice as an input
        if (e.leaf->grad.defined()) finals.push_back(e.leaf);
      }
    }
    // Free the graph as we go: the saved tensors (captured by the backward
    // function) and the edges.
    node->backward = nullptr;
    node->inputs.clear();
    ledger.set_op(outer_op);
    for (const std::shared_ptr<VarImpl>& leaf : finals) grad_final(*leaf);
  }
}

void Variable::backward() const { backward(GradFinalHook{}); }

}  // namespace mp::ag
