#include "models/nf4_base.h"

#include "engine/error.h"
#include "nn/embedding.h"
#include "nn/linear.h"

namespace mp::models {

namespace {

// HF's bitsandbytes integration skips the output layer (llm_int8_skip_modules
// defaults to the LM head).
bool is_lm_head(const std::string& path) { return path == "lm_head" || path.ends_with(".lm_head"); }

// A Linear inside an adapter (LoRA's A and B) is the adapter's, not the base's.
bool in_adapter(const nn::Linear& linear) { return linear.weight.value().tag() == Tag::adapter; }

void retype(ag::Variable& v, DType dt) {
  if (!v.defined() || v.value().dtype() == dt) return;
  TagScope scope(v.value().tag());
  v.value() = v.value().to(dt);
}

}  // namespace

void quantize_base_nf4(CausalLM& model) {
  std::vector<std::pair<std::string, nn::Linear*>> linears;
  for (auto& [path, m] : model.named_modules()) {
    auto* linear = dynamic_cast<nn::Linear*>(m);
    if (!linear || is_lm_head(path) || !linear->weight.defined() || in_adapter(*linear)) continue;
    if (linear->weight.requires_grad())
      fail("--base-dtype nf4: {}.weight is trainable; NF4 stores frozen weights only (use a PEFT method)", path);
    linears.emplace_back(path, linear);
  }
  for (auto& [path, linear] : linears) linear->quantize_nf4();
  for (auto& [path, m] : model.named_modules())
    if (auto* e = dynamic_cast<nn::Embedding*>(m)) retype(e->weight, DType::bf16);
}

void dequantize_base_nf4(CausalLM& model) {
  for (auto& [path, m] : model.named_modules()) {
    if (auto* linear = dynamic_cast<nn::Linear*>(m)) linear->dequantize_nf4();
    if (auto* e = dynamic_cast<nn::Embedding*>(m)) retype(e->weight, DType::f32);
  }
}

BaseStorage base_storage(CausalLM& model) {
  BaseStorage s;
  for (auto& [path, m] : model.named_modules())
    if (auto* linear = dynamic_cast<nn::Linear*>(m); linear && linear->nf4_weight()) {
      ++s.nf4_matrices;
      s.nf4_elements += linear->nf4_weight()->numel();
      s.nf4_bytes += linear->nf4_weight()->nbytes();
    }
  for (const auto& [name, p] : model.named_parameters()) {
    const Tensor& t = p.value();
    if (t.tag() != Tag::weights) continue;  // adapters are counted elsewhere
    (t.dtype() == DType::bf16 ? s.bf16_bytes : s.f32_bytes) += t.nbytes();
  }
  return s;
}

}  // namespace mp::models
