// Variable: a Tensor plus what reverse-mode autograd needs: the gradient,
// whether one is wanted, and the Node (the op) that made it.
//
// A differentiable op (autograd/ops.h) computes its forward on Tensors and
// hands make_result() a backward function that captures ONLY the tensors a
// required gradient needs. Example, in autograd/ops/matmul.cpp:
//
//   y = x @ W with W frozen: the node keeps W (for dx) but not x (dW is never
//   computed), so x's bytes are freed as soon as the forward moves on.
//
// For that to hold, the graph's edges (Edge, below) point at the Node that
// made an input, never at the input's value.
//
// backward() walks the Nodes once in reverse topological order, sums the
// gradients flowing into each, stores them in leaves that require grad
// (Tag::grads) and frees each node's saved tensors and edges as it goes; a
// second backward() through the same graph is an mp::Error.
#pragma once
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <functional>

#include "engine/tensor.h"

namespace mp::ag {

struct Node;

struct VarImpl {
  Tensor value;
  Tensor grad;                  // accumulated by backward(); leaves only
  Tag grad_tag = Tag::grads;    // what grad is: a parameter's, or one in flight (recompute's cut inputs)
  bool requires_grad = false;
  std::shared_ptr<Node> node;   // the op that made this; null for leaves
};

class Variable {
 public:
  Variable() = default;
  explicit Variable(Tensor value, bool requires_grad = false);

  bool defined() const { return impl_ != nullptr; }
  const Tensor& value() const { return impl_->value; }
  Tensor& value() { return impl_->value; }
  const Tensor& grad() const { return impl_->grad; }
  bool requires_grad() const { return impl_->requires_grad; }
  void set_requires_grad(bool r);
  bool is_leaf() const { return impl_->node == nullptr; }
  const Shape& shape() const { return impl_->value.shape(); }
  int64_t size(int d) const { return impl_->value.size(d); }
  int dim() const { return impl_->value.dim(); }
  double item() const { return impl_->value.item(); }

  // Reverse-mode sweep from this Variable. Without an argument it must hold
  // one element (a loss) and its gradient is 1.
  void backward() const;
  void backward(const Tensor& grad_output) const;
  // As backward(), calling grad_final(leaf) as soon as a leaf's gradient is
  // complete: no node left in this sweep adds to it (data parallelism starts
  // communicating it while the rest of backward runs). A nested sweep (a
  // recompute's) adds to leaves this sweep does not see: they get no call.
  using GradFinalHook = std::function<void(const VarImpl& leaf)>;
  void backward(const GradFinalHook& grad_final) const;
  // Drop the accumulated gradient (its bytes are freed).
  void zero_grad() const;
  // The same value, cut from the graph, requiring no gradient.
  Variable detach() const;

  const std::shared_ptr<VarImpl>& impl() const { return impl_; }

 private:
  void sweep(const Tensor& grad_output, const GradFinalHook& grad_final) const;
  std::shared_ptr<VarImpl> impl_;
};

// gin[i] is to be set for each input i whose edge is set (a gradient is
// needed there); gout is the output's gradient.
using BackwardFn = std::function<void(const Tensor& gout, std::span<Tensor> gin)>;

// Where an input's gradient goes: into the Node that made it (a non-leaf
// input), or into a leaf's grad. The edge never holds a non-leaf's value:
// an activation that no backward needs is freed as soon as its Variable is
// dropped, even while the graph through it lives on (flashlight does the
// same). A leaf edge holds the leaf itself, a parameter alive anyway.
struct Edge {
  std::shared_ptr<Node> node;     // set for a non-leaf input
  std::shared_ptr<VarImpl> leaf;  // set for a leaf input
  explicit operator bool() const { return node || leaf; }
};

struct Node {
  std::string name;          // the op's name, for errors and debugging
  Shape shape;               // the output's shape (incoming gradients must match)
  std::vector<Edge> inputs;  // an empty edge where no gradient is needed
  BackwardFn backward;       // reset once run: backward() frees the graph as it goes
};

// Whether gradients are recorded at all (false inside a NoGrad scope).
inline bool grad_enabled() { return thread_state().grad_enabled; }
struct NoGrad : FieldScope<&ThreadState::grad_enabled> {
  NoGrad() : FieldScope(false) {}
};
// The opposite: record again inside a NoGrad region.
struct EnableGrad : FieldScope<&ThreadState::grad_enabled> {
  EnableGrad() : FieldScope(true) {}
};

// Whether an op must prepare the gradient of this input (grad mode on and
// the input wants one). Ops use it to decide what to save.
inline bool needs_grad(const Variable& v) { return grad_enabled() && v.defined() && v.requires_grad(); }

// The edge from a new node to input v: empty unless v needs a gradient.
Edge edge_to(const Variable& v);

// Wrap an op's output: records a Node when any input needs a gradient,
// otherwise drops `backward` (and everything it captured) at once.
Variable make_result(Tensor value, const char* name, std::initializer_list<Variable> inputs, BackwardFn backward);
Variable make_result(Tensor value, const char* name, const std::vector<Variable>& inputs, BackwardFn backward);

}  // namespace mp::ag
