// Two small Module kinds that PEFT's adapters are built from, named as in
// PyTorch so that parameter names read like HF PEFT's:
//
//   ModuleDict    children added and removed by name (torch.nn.ModuleDict):
//                 "lora_A.default", "lora_A.other"
//   WeightModule  one parameter "weight" (a bias-free nn.Linear or an
//                 nn.Embedding as far as its state is concerned)
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include "nn/module.h"

namespace mp::peft {

using ag::Variable;

class ModuleDict : public nn::Module {
 public:
  template <class M>
  std::shared_ptr<M> insert(std::string name, std::shared_ptr<M> m) {
    return add_module(std::move(name), std::move(m));
  }
  bool erase(std::string_view name) { return remove_module(name); }
};

class WeightModule : public nn::Module {
 public:
  // value keeps its tag (adapter parameters are made under Tag::adapter).
  explicit WeightModule(Tensor value, bool requires_grad = true)
      : weight(add_parameter("weight", std::move(value), requires_grad)) {}
  Variable weight;
};

}  // namespace mp::peft
