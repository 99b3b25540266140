// Module: a named tree of parameters, buffers and child modules, as
// torch.nn.Module. Names are dotted paths ("transformer.h.0.attn.c_attn.weight")
// and match Hugging Face checkpoints, so a state dict loads by name.
//
//   struct Block : Module {
//     std::shared_ptr<Linear> c_attn = add_module("c_attn", std::make_shared<Linear>(...));
//   };
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "autograd/variable.h"

namespace mp::nn {

using ag::Variable;
using NamedParameter = std::pair<std::string, Variable>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Depth first in registration order; a Variable is a shared handle, so
  // changing its value or requires_grad changes the module's parameter.
  // A parameter registered twice (tied weights) is listed once, under the
  // first name it was reached by, as in PyTorch.
  std::vector<NamedParameter> named_parameters(const std::string& prefix = "") const;
  std::vector<Variable> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(const std::string& prefix = "") const;
  // This module first (under `prefix`), then every descendant, depth first.
  std::vector<std::pair<std::string, Module*>> named_modules(const std::string& prefix = "");
  // The module at a dotted path ("h.0.attn"); nullptr when there is none.
  Module* find_module(std::string_view path);
  // Parameters with requires_grad / all of them (elements, not bytes).
  int64_t num_parameters(bool trainable_only = false) const;

  // train(true) enables dropout; eval() is train(false). Applies to children.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Set requires_grad on parameters whose full name matches `pattern`: "*" is
  // every parameter, "a.*" a prefix, "*.bias" a suffix, otherwise the exact
  // name. Returns how many matched.
  int set_requires_grad(std::string_view pattern, bool requires_grad);
  int freeze(std::string_view pattern = "*") { return set_requires_grad(pattern, false); }
  int unfreeze(std::string_view pattern = "*") { return set_requires_grad(pattern, true); }

  // Forget every parameter's gradient.
  void zero_grad() const;

  // Move every parameter and buffer to `device` (a tied weight once), as
  // torch's module.to(device); gradients are forgotten. Storage tags stay.
  void to(Device device);

 protected:
  // The value's storage is retagged `weights` unless it is already tagged
  // `weights` or `adapter`. Names must be unique within this module and may
  // not contain '.'.
  Variable add_parameter(std::string name, Tensor value, bool requires_grad = true);
  // Register an existing Variable (tied weights: one Variable, two names).
  Variable add_parameter(std::string name, Variable v);
  // A buffer is state that is saved and loaded but never trained (no grad).
  Tensor add_buffer(std::string name, Tensor value);
  template <class M>
  std::shared_ptr<M> add_module(std::string name, std::shared_ptr<M> m) {
    check_new_name(name);
    children_.emplace_back(std::move(name), m);
    return m;
  }
  // Unregister a child module; returns whether there was one by that name.
  bool remove_module(std::string_view name);
  // Unregister a parameter of this module (its storage is freed when the
  // last handle goes); returns whether there was one by that name.
  bool remove_parameter(std::string_view name);

 private:
  void check_new_name(const std::string& name) const;  // asserts: unique, non-empty, no '.'
  std::vector<NamedParameter> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Glob match used by set_requires_grad and target_modules: '*' matches any
// run of characters (dots included), everything else matches itself, so
// "*", "p.*", "*.s", "h.*.attn.*" and exact names all work.
bool name_matches(std::string_view name, std::string_view pattern);

}  // namespace mp::nn
