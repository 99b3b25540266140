#include "nn/module.h"

#include <algorithm>
#include <cassert>
#include <unordered_set>

namespace mp::nn {

static std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

void Module::check_new_name(const std::string& name) const {
  assert(!name.empty() && name.find('.') == std::string::npos && "a module member name is one path component");
  for (const auto& [n, p] : params_) assert(n != name && "parameter name registered twice");
  for (const auto& [n, b] : buffers_) assert(n != name && "buffer name registered twice");
  for (const auto& [n, c] : children_) assert(n != name && "module name registered twice");
  (void)name;
}

Variable Module::add_parameter(std::string name, Tensor value, bool requires_grad) {
  if (value.tag() != Tag::weights && value.tag() != Tag::adapter) value.storage()->retag(Tag::weights);
  return add_parameter(std::move(name), Variable(std::move(value), requires_grad));
}

Variable Module::add_parameter(std::string name, Variable v) {
  check_new_name(name);
  params_.emplace_back(std::move(name), v);
  return v;
}

Tensor Module::add_buffer(std::string name, Tensor value) {
  check_new_name(name);
  buffers_.emplace_back(std::move(name), value);
  return value;
}

namespace {

// Erase the entry called `name` from a list of (name, value) pairs; whether there was one.
template <class List>
bool erase_named(List& list, std::string_view name) {
  auto it = std::find_if(list.begin(), list.end(), [&](const auto& e) { return e.first == name; });
  if (it == list.end()) return false;
  list.erase(it);
  return true;
}

}  // namespace

bool Module::remove_module(std::string_view name) { return erase_named(children_, name); }
bool Module::remove_parameter(std::string_view name) { return erase_named(params_, name); }

std::vector<NamedParameter> Module::named_parameters(const std::string& prefix) const {
  std::vector<NamedParameter> out;
  std::unordered_set<const ag::VarImpl*> seen;
  // Own parameters first, then each child's; `seen` drops the second name
  // of a tied parameter. (A local class may use Module's private members.)
  struct Walk {
    std::vector<NamedParameter>& out;
    std::unordered_set<const ag::VarImpl*>& seen;
    void operator()(const Module& m, const std::string& prefix) const {
      for (const auto& [name, v] : m.params_)
        if (seen.insert(v.impl().get()).second) out.emplace_back(join(prefix, name), v);
      for (const auto& [name, child] : m.children_) (*this)(*child, join(prefix, name));
    }
  };
  Walk{out, seen}(*this, prefix);
  return out;
}

std::vector<Variable> Module::parameters() const {
  std::vector<Variable> out;
  for (auto& [name, v] : named_parameters()) out.push_back(v);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(const std::string& prefix) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, b] : buffers_) out.emplace_back(join(prefix, name), b);
  for (const auto& [name, child] : children_) {
    auto sub = child->named_buffers(join(prefix, name));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules(const std::string& prefix) {
  std::vector<std::pair<std::string, Module*>> out{{prefix, this}};
  for (auto& [name, child] : children_) {
    auto sub = child->named_modules(join(prefix, name));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

Module* Module::find_module(std::string_view path) {
  Module* m = this;
  while (!path.empty()) {
    size_t dot = path.find('.');
    std::string_view head = path.substr(0, dot);
    Module* next = nullptr;
    for (auto& [name, child] : m->children_)
      if (name == head) next = child.get();
    if (!next) return nullptr;
    m = next;
    path = dot == std::string_view::npos ? std::string_view{} : path.substr(dot + 1);
  }
  return m;
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (const auto& [name, v] : named_parameters())
    if (!trainable_only || v.requires_grad()) n += v.value().numel();
  return n;
}

void Module::to(Device device) {
  for (auto& [name, v] : named_parameters()) {
    v.zero_grad();
    v.value() = v.value().to(device);
  }
  for (auto& [path, m] : named_modules())
    for (auto& [name, b] : m->buffers_) b = b.to(device);
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

int Module::set_requires_grad(std::string_view pattern, bool requires_grad) {
  int matched = 0;
  for (auto& [name, v] : named_parameters()) {
    if (!name_matches(name, pattern)) continue;
    Variable(v).set_requires_grad(requires_grad);
    ++matched;
  }
  return matched;
}

void Module::zero_grad() const {
  for (const auto& [name, v] : named_parameters()) v.zero_grad();
}

// Classic wildcard matching with one backtrack point: on a mismatch, let the
// most recent '*' swallow one more character and try again.
bool name_matches(std::string_view name, std::string_view pattern) {
  size_t n = 0, p = 0;
  size_t star = std::string_view::npos, star_n = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_n = n;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p;
      ++n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++star_n;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace mp::nn
