// Generic containers of child modules, as in PyTorch, so that parameter
// names read like Hugging Face's:
//
//   ModuleList  a numbered list ("h.0", "h.1", ...), torch.nn.ModuleList
//   ModuleDict  children added and removed by name ("lora_A.default",
//               "lora_A.other"), torch.nn.ModuleDict
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "nn/module.h"

namespace mp::nn {

template <class M>
class ModuleList : public Module {
 public:
  void push_back(std::shared_ptr<M> m) { items_.push_back(add_module(std::to_string(items_.size()), std::move(m))); }
  M& operator[](size_t i) const { return *items_[i]; }
  size_t size() const { return items_.size(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

class ModuleDict : public Module {
 public:
  template <class M>
  std::shared_ptr<M> insert(std::string name, std::shared_ptr<M> m) {
    return add_module(std::move(name), std::move(m));
  }
  bool erase(std::string_view name) { return remove_module(name); }
};

}  // namespace mp::nn
