#include "peft/modules_to_save.h"

#include <set>

#include "engine/error.h"

namespace mp::peft {

namespace {

bool same(const ag::Variable& a, const ag::Variable& b) { return a.impl() == b.impl(); }

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

}  // namespace

std::vector<nn::NamedParameter> modules_to_save_parameters(models::CausalLM& model, const std::vector<std::string>& names) {
  const bool tied = same(model.lm_head_weight(), model.token_embedding_weight());
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
    if (picked.size() > before) continue;
    if (tied && std::string("lm_head").ends_with(name))
      fail("modules_to_save '{}': this {} model ties lm_head to {} (tie_word_embeddings); PEFT 0.21 trains an "
           "untied copy of the head, which minipeft does not do",
           name, arch, model.token_embedding_name());
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
    if (tied && same(p, model.token_embedding_weight()))
      fail("modules_to_save: '{}' (of module '{}') is tied to the lm_head (tie_word_embeddings); PEFT 0.21 trains "
           "an untied copy of it, which minipeft does not do",
           pname, owner);
    if (p.value().dtype() != DType::f32)
      fail("modules_to_save: '{}' (of module '{}') is stored in {}, a frozen base's dtype; train it on an f32 base",
           pname, owner, dtype_name(p.value().dtype()));
    out.emplace_back(pname, p);
  }
  return out;
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
