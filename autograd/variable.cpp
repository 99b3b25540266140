#include "autograd/variable.h"

#include "engine/error.h"

namespace mp::ag {

Variable::Variable(Tensor value, bool requires_grad) : impl_(std::make_shared<VarImpl>()) {
  impl_->value = std::move(value);
  impl_->requires_grad = requires_grad;
}

void Variable::set_requires_grad(bool r) {
  if (!is_leaf()) fail("requires_grad can only be changed on a leaf Variable");
  impl_->requires_grad = r;
  if (!r) impl_->grad = Tensor();
}

void Variable::zero_grad() const { impl_->grad = Tensor(); }

Variable Variable::detach() const { return Variable(impl_->value, false); }


Edge edge_to(const Variable& v) {
  if (!needs_grad(v)) return {};
  if (v.is_leaf()) return Edge{nullptr, v.impl()};
  return Edge{v.impl()->node, nullptr};
}

Variable make_result(Tensor value, const char* name, const std::vector<Variable>& inputs, BackwardFn backward) {
  Ledger::instance().note_op(name);  // names a peak reached while this op allocated
  bool any = false;
  for (const Variable& v : inputs) any = any || needs_grad(v);
  if (!any) return Variable(std::move(value), false);
  auto node = std::make_shared<Node>();
  node->name = name;
  node->shape = value.shape();
  for (const Variable& v : inputs) node->inputs.push_back(edge_to(v));
  node->backward = std::move(backward);
  Variable out(std::move(value), true);
  out.impl()->node = std::move(node);
  return out;
}

Variable make_result(Tensor value, const char* name, std::initializer_list<Variable> inputs, BackwardFn backward) {
  return make_result(std::move(value), name, std::vector<Variable>(inputs), std::move(backward));
}

}  // namespace mp::ag
