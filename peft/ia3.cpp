#include "peft/ia3.h"

#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "nn/init.h"

namespace mp::peft {

void Ia3Linear::add_adapter(const std::string& name, const Ia3Config& c, int64_t in, int64_t out, uint64_t seed) {
  if (name.empty() || name.find('.') != std::string::npos)
    fail("adapter name '{}' must be non-empty and contain no '.'", name);
  if (has_adapter(name)) fail("adapter '{}' already exists", name);
  TagScope scope(Tag::adapter);
  Tensor l = Tensor::empty(feedforward_ ? Shape{1, in} : Shape{out, 1});  // (1, in) or (out, 1)
  if (c.init_ia3_weights) ops::fill(l, 1.0);
  else nn::init::normal_(l, 0.0, 1.0, seed);
  vectors_[name] = ia3_l_->insert(name, l);
  if (active_.empty()) active_ = name;
}

void Ia3Linear::delete_adapter(const std::string& name) {
  if (!has_adapter(name)) fail("no adapter '{}' to delete", name);
  if (merged_ == name) fail("adapter '{}' is merged; unmerge it before deleting it", name);
  ia3_l_->erase(name);
  vectors_.erase(name);
  if (active_ == name) active_.clear();
}

const Variable& Ia3Linear::vector(const std::string& name) const {
  auto it = vectors_.find(name);
  if (it == vectors_.end()) fail("no IA3 adapter '{}'", name);
  return it->second;
}

void Ia3Linear::set_active(const std::string& name) {
  if (!name.empty() && !has_adapter(name)) fail("no IA3 adapter '{}'", name);
  if (merged() && name != merged_) fail("adapter '{}' is merged; unmerge it before switching to '{}'", merged_, name);
  active_ = name;
}

const Variable* Ia3Linear::applied() const {
  if (active_.empty() || merged()) return nullptr;
  return &vectors_.at(active_);
}

// Forward and backward are ag::mul's: x (..., in) * l (1, in) broadcast over
// the leading axes; dl = sum over them of g * x, dx = g * l.
Variable Ia3Linear::input(const Variable& x) {
  const Variable* l = feedforward_ ? applied() : nullptr;
  if (!l) return x;
  return ag::mul(x, ag::reshape(*l, {l->size(1)}));  // (..., in) * (in)
}

// base_out (..., out) * l (out, 1) read as (out); gradients as above.
Variable Ia3Linear::forward(const Variable& /*x*/, const Variable& base_out, const nn::Linear& /*base*/) {
  const Variable* l = feedforward_ ? nullptr : applied();
  if (!l) return base_out;
  return ag::mul(base_out, ag::reshape(*l, {l->size(0)}));  // (..., out) * (out)
}

Tensor Ia3Linear::weight_factor(const nn::Linear& base, const Tensor& l) const {
  // torch weight (out, in): l (out, 1) scales rows, l (1, in) columns, as is.
  // conv1d weight (in, out): l^T, i.e. (1, out) or (in, 1); l has a 1 axis, so a reshape transposes.
  if (base.layout() == nn::Layout::torch) return l;
  return l.reshape({l.size(1), l.size(0)});
}

void Ia3Linear::scale_base(nn::Linear& base, const Tensor& l, int sign) const {
  if (!base.weight.defined() || base.weight.value().dtype() != DType::f32)
    fail("IA3 merge needs an f32 base weight (dequantize an NF4 base first)");
  TagScope scope(Tag::weights);
  // PEFT's unmerge divides by l + 1e-8.
  const Tensor f = sign > 0 ? l : ops::add(l, Tensor::full({1}, 1e-8, l.dtype(), l.device()));
  auto apply = [sign](const Tensor& t, const Tensor& by) { return sign > 0 ? ops::mul(t, by) : ops::div(t, by); };
  Tensor W = base.weight.value();
  W.copy_from(apply(W, weight_factor(base, f)));
  if (!feedforward_ && base.bias.defined()) {
    Tensor b = base.bias.value();  // (out)
    b.copy_from(apply(b, f.reshape({f.numel()})));
  }
}

void Ia3Linear::merge(nn::Linear& base) {
  if (merged()) fail("adapter '{}' is already merged", merged_);
  if (active_.empty()) return;  // nothing to merge
  scale_base(base, vectors_.at(active_).value(), +1);
  merged_ = active_;
}

void Ia3Linear::unmerge(nn::Linear& base) {
  if (!merged()) return;
  scale_base(base, vectors_.at(merged_).value(), -1);
  merged_.clear();
}

}  // namespace mp::peft
