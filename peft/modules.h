// The Module kinds that PEFT's adapters are built from, named as in PyTorch
// so that parameter names read like HF PEFT's:
//
//   ModuleDict    children by name (nn/containers.h): "lora_A.default"
//   WeightModule  one parameter "weight" (a bias-free nn.Linear or an
//                 nn.Embedding as far as its state is concerned)
//   ParameterDict parameters by name: IA3's "ia3_l.default"
#pragma once
#include <utility>

#include "nn/containers.h"
#include "nn/module.h"

namespace mp::peft {

using ag::Variable;
using nn::ModuleDict;

class WeightModule : public nn::Module {
 public:
  // value keeps its tag (adapter parameters are made under Tag::adapter).
  explicit WeightModule(Tensor value, bool requires_grad = true)
      : weight(add_parameter("weight", std::move(value), requires_grad)) {}
  Variable weight;
};

class ParameterDict : public nn::Module {
 public:
  // value keeps its tag, as in WeightModule.
  Variable insert(std::string name, Tensor value, bool requires_grad = true) {
    return add_parameter(std::move(name), std::move(value), requires_grad);
  }
  bool erase(std::string_view name) { return remove_parameter(name); }
};

}  // namespace mp::peft
