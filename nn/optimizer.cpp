#include "nn/optimizer.h"

#include <cmath>
#include <set>
#include <unordered_set>

#include "engine/error.h"

namespace mp::nn {

Optimizer::Optimizer(const std::vector<NamedParameter>& params, double lr, std::vector<std::string> state_names)
    : state_names_(std::move(state_names)), lr_(lr) {
  std::unordered_set<const ag::VarImpl*> seen;
  for (const auto& [name, v] : params) {
    if (!v.defined() || !v.requires_grad()) continue;  // frozen: no slot, no state, ever
    if (!v.is_leaf()) fail("optimizer: parameter '{}' is not a leaf Variable", name);
    if (v.value().dtype() == DType::bf16)
      fail("optimizer: parameter '{}' is bf16 and trainable; optimizers keep f32 parameters (a bf16 base is "
           "frozen and trained through an adapter)",
           name);
    if (!seen.insert(v.impl().get()).second) continue;  // the same parameter listed twice
    Slot slot;
    slot.name = name;
    slot.param = v;
    slot.state.resize(state_names_.size());
    slots_.push_back(std::move(slot));
  }
}

void Optimizer::step() {
  ag::NoGrad no_grad;
  TagScope scope(Tag::workspace);  // temporaries of an update are workspace
  ++step_count_;
  for (Slot& slot : slots_) {
    if (!slot.param.grad().defined()) continue;
    if (slot.param.grad().shape() != slot.param.shape())
      fail("optimizer: gradient of '{}' has shape {}, the parameter {}", slot.name,
           shape_str(slot.param.grad().shape()), shape_str(slot.param.shape()));
    ++slot.steps;
    update(slot);
  }
  finish_step();
}

void Optimizer::zero_grad() {
  for (Slot& slot : slots_) slot.param.zero_grad();
}

std::vector<NamedParameter> Optimizer::params() const {
  std::vector<NamedParameter> out;
  for (const Slot& slot : slots_) out.emplace_back(slot.name, slot.param);
  return out;
}

size_t Optimizer::state_bytes() const {
  size_t bytes = 0;
  for (const Slot& slot : slots_)
    for (const Tensor& t : slot.state)
      if (t.defined()) bytes += t.nbytes();
  return bytes;
}

Tensor& Optimizer::state_zeros(Slot& slot, size_t i) {
  Tensor& t = slot.state[i];
  if (!t.defined()) t = Tensor::zeros(slot.param.shape(), DType::f32, slot.param.value().device(), Tag::optimizer);
  return t;
}

static Tensor int_scalar(int64_t value) {
  return Tensor::from_vector(std::vector<int32_t>{int32_t(value)}, {1}, Tag::workspace);
}

TensorMap Optimizer::state_dict() const {
  TensorMap out;
  out["step"] = int_scalar(step_count_);
  for (const Slot& slot : slots_) {
    if (slot.steps > 0) out["step." + slot.name] = int_scalar(slot.steps);
    for (size_t i = 0; i < state_names_.size(); ++i)
      if (slot.state[i].defined()) out[state_names_[i] + "." + slot.name] = slot.state[i];
  }
  return out;
}

static int64_t read_int_scalar(const Tensor& t, const std::string& key) {
  if (t.numel() != 1) fail("optimizer state '{}': expected one element, got shape {}", key, shape_str(t.shape()));
  double v = t.item();
  if (!(v >= 0 && v < 1e15) || v != std::floor(v)) fail("optimizer state '{}': {} is not a step count", key, v);
  return int64_t(v);
}

void Optimizer::load_state_dict(const TensorMap& state) {
  std::vector<std::string> problems;
  std::set<std::string> used;
  auto find = [&](const std::string& key) -> const Tensor* {
    auto it = state.find(key);
    if (it == state.end()) return nullptr;
    used.insert(key);
    return &it->second;
  };

  // Check everything first, so that a bad state leaves this optimizer as it was.
  int64_t step_count = 0;
  if (const Tensor* t = find("step")) step_count = read_int_scalar(*t, "step");
  else problems.push_back("missing key 'step'");
  std::vector<int64_t> steps(slots_.size(), 0);
  std::vector<std::vector<Tensor>> tensors(slots_.size());
  for (size_t s = 0; s < slots_.size(); ++s) {
    const Slot& slot = slots_[s];
    if (const Tensor* t = find("step." + slot.name)) steps[s] = read_int_scalar(*t, "step." + slot.name);
    tensors[s].resize(state_names_.size());
    for (size_t i = 0; i < state_names_.size(); ++i) {
      std::string key = state_names_[i] + "." + slot.name;
      const Tensor* t = find(key);
      if (!t) continue;
      if (t->shape() != slot.param.shape())
        problems.push_back(fmt::format("{}: checkpoint has {}, parameter is {}", key, shape_str(t->shape()),
                                       shape_str(slot.param.shape())));
      else
        tensors[s][i] = *t;
    }
    bool any_state = false;
    for (const Tensor& t : tensors[s]) any_state = any_state || t.defined();
    if (any_state && steps[s] == 0) problems.push_back(fmt::format("'{}' has state but no 'step.{}'", slot.name, slot.name));
  }
  for (const auto& [key, t] : state)
    if (!used.count(key)) problems.push_back(fmt::format("unexpected key '{}'", key));
  if (!problems.empty()) {
    std::string msg = "optimizer state does not match the optimizer:";
    for (const std::string& p : problems) msg += "\n  " + p;
    throw Error(msg);
  }

  step_count_ = step_count;
  for (size_t s = 0; s < slots_.size(); ++s) {
    Slot& slot = slots_[s];
    slot.steps = steps[s];
    for (size_t i = 0; i < state_names_.size(); ++i) {
      slot.state[i] = Tensor();
      if (!tensors[s][i].defined()) continue;
      Tensor copy = Tensor::empty(slot.param.shape(), DType::f32, slot.param.value().device(), Tag::optimizer);
      copy.copy_from(tensors[s][i]);
      slot.state[i] = copy;
    }
  }
}

}  // namespace mp::nn
