#include "peft/modules_to_save.h"

#include <algorithm>
#include <set>

#include "engine/error.h"

namespace mp::peft {

namespace {

// The distinct last parts of the model's module paths, digits left out ("attn, c_attn, h, ln_1, ...").
std::string module_kinds(models::CausalLM& model) {
  std::set<std::string> kinds;
  for (const auto& [path, module] : model.named_modules()) {
    const std::string last = path.substr(path.rfind('.') + 1);
    if (!last.empty() && last.find_first_not_of("0123456789") != std::string::npos) kinds.insert(last);
  }
  std::string out;
  for (const std::string& k : kinds) out += (out.empty() ? "" : ", ") + k;
  return out;
}

// Whether a name picks the token embedding's module or a head the model would have untied.
bool picks_tied(models::CausalLM& model, const std::string& name) {
  const std::string embedding = model.token_embedding_name();  // "transformer.wte.weight"
  return std::string("lm_head").ends_with(name) || embedding.substr(0, embedding.rfind('.')).ends_with(name);
}

}  // namespace

std::vector<nn::NamedParameter> modules_to_save_parameters(models::CausalLM& model, const std::vector<std::string>& names) {
  for (const std::string& name : names)
    if (picks_tied(model, name)) model.untie_lm_head();
  const std::string arch(models::arch_name(model.config().arch));
  std::vector<std::string> picked;  // module paths, "transformer.ln_f"
  for (const std::string& name : names) {
    const size_t before = picked.size();
    for (const auto& [path, module] : model.named_modules())
      if (!path.empty() && path.ends_with(name)) {
        auto* linear = dynamic_cast<nn::Linear*>(module);
        if (linear && linear->nf4_weight())
          fail("modules_to_save '{}': '{}' holds an NF4 weight, which is frozen storage (QLoRA's base)", name, path);
        picked.push_back(path);
      }
    if (picked.size() == before)
      fail("modules_to_save '{}' matches no module of the {} model (a module matches when its name ends with it; "
           "its modules are: {})",
           name, arch, module_kinds(model));
  }
  std::vector<nn::NamedParameter> out;
  for (const auto& [pname, p] : model.named_parameters()) {
    std::string owner;
    for (const std::string& path : picked)
      if (pname.starts_with(path + ".")) owner = path;
    if (owner.empty()) continue;
    if (p.value().dtype() != DType::f32)
      fail("modules_to_save: '{}' (of module '{}') is stored in {}, a frozen base's dtype; train it on an f32 base",
           pname, owner, dtype_name(p.value().dtype()));
    out.emplace_back(pname, p);
  }
  return out;
}

void SavedModules::add(const std::string& adapter, const std::vector<nn::NamedParameter>& params) {
  std::map<std::string, Tensor>& mine = copies_[adapter];
  for (const nn::NamedParameter& param : params) {
    const std::string& pname = param.first;
    auto it = std::find_if(params_.begin(), params_.end(), [&](const auto& s) { return s.first == pname; });
    if (it == params_.end()) it = params_.insert(params_.end(), {pname, Saved{param.second, param.second.value()}});  // shows its original now
    mine[pname] = it->second.original.clone(Tag::adapter);
  }
}

void SavedModules::erase(const std::string& adapter) {
  if (shown_ == adapter) show("");
  copies_.erase(adapter);
  std::erase_if(params_, [&](const auto& s) {
    return std::none_of(copies_.begin(), copies_.end(), [&](const auto& c) { return c.second.count(s.first) > 0; });
  });
}

Tensor& SavedModules::slot(const std::string& adapter, const std::string& pname, Saved& s) {
  auto mine = copies_.find(adapter);
  if (mine == copies_.end()) return s.original;
  auto copy = mine->second.find(pname);
  return copy == mine->second.end() ? s.original : copy->second;
}

void SavedModules::show(const std::string& adapter) {
  for (auto& [pname, s] : params_) {
    Tensor& now = slot(shown_, pname, s);
    now = s.param.value();  // the same tensor, unless the model was moved since (Module::to)
    Tensor& next = slot(adapter, pname, s);
    next = next.to(now.device());
    s.param.value() = next;
  }
  shown_ = copies_.count(adapter) ? adapter : "";
}

std::vector<nn::NamedParameter> SavedModules::parameters(const std::string& adapter) const {
  std::vector<nn::NamedParameter> out;
  auto it = copies_.find(adapter);
  if (it == copies_.end()) return out;
  for (const auto& [pname, s] : params_)
    if (it->second.count(pname)) out.emplace_back(pname, s.param);
  return out;
}

std::vector<std::pair<std::string, Tensor>> SavedModules::copies(const std::string& adapter) const {
  std::vector<std::pair<std::string, Tensor>> out;
  auto it = copies_.find(adapter);
  if (it == copies_.end()) return out;
  for (const auto& [pname, s] : params_)  // the shown copies: where the model holds them now
    if (it->second.count(pname)) out.emplace_back(pname, adapter == shown_ ? s.param.value() : it->second.at(pname));
  return out;
}

int64_t SavedModules::hidden_elements(const std::set<const Storage*>& shown) const {
  int64_t n = 0;
  auto count = [&](const Tensor& t) { n += shown.count(t.storage().get()) ? 0 : t.numel(); };
  for (const auto& [pname, s] : params_) count(s.original);
  for (const auto& [adapter, mine] : copies_)
    for (const auto& [pname, copy] : mine) count(copy);
  return n;
}

void SavedModules::keep_shown() {
  params_.clear();
  copies_.clear();
  shown_.clear();
}

void check_not_adapted(const std::vector<nn::NamedParameter>& saved,
                       const std::vector<std::pair<std::string, nn::Linear*>>& layers, const char* method) {
  for (const auto& [pname, p] : saved)
    for (const auto& [path, linear] : layers)
      if (pname.starts_with(path + "."))
        fail("modules_to_save: '{}' is also a {} target module; a module is trained either in full or through "
             "the adapter, not both",
             path, method);
}

}  // namespace mp::peft
