#include "train/method_variants.h"

#include "engine/error.h"
#include "models/load.h"

namespace mp::train {

const std::vector<MethodVariant>& method_variants() {
  static const std::vector<MethodVariant> v = {
      {"full", "full fine-tuning", [](TrainConfig& c) { c.method = "full"; }},
      {"full+mixed", "full, mixed precision",
       [](TrainConfig& c) {
         c.method = "full";
         c.precision = DType::bf16;
       }},
      {"full+accum2", "full, grad-accum 2",
       [](TrainConfig& c) {
         c.method = "full";
         c.grad_accum = 2;
       }},
      {"lora", "LoRA r=8", [](TrainConfig& c) { c.method = "lora"; }},
      {"lora+dropout", "LoRA r=8, dropout 0.1",
       [](TrainConfig& c) {
         c.method = "lora";
         c.lora_dropout = 0.1f;
       }},
      {"lora+bf16", "LoRA r=8, bf16 base",
       [](TrainConfig& c) {
         c.method = "lora";
         c.base_dtype = models::BaseDType::bf16;
       }},
      {"lora+nf4", "LoRA r=8, nf4 base",
       [](TrainConfig& c) {
         c.method = "lora";
         c.base_dtype = models::BaseDType::nf4;
       }},
      {"lora+dora", "DoRA r=8",
       [](TrainConfig& c) {
         c.method = "lora";
         c.use_dora = true;
       }},
      {"lora+save", "LoRA r=8 + final norm",
       [](TrainConfig& c) {  // PEFT's modules_to_save: the final layer norm
         c.method = "lora";
         const bool gpt2 = models::config_of(c.model).arch == models::Arch::gpt2;
         c.modules_to_save = {gpt2 ? "ln_f" : "decoder.final_layer_norm"};
       }},
      {"lora+head", "LoRA r=8 + head copy",
       [](TrainConfig& c) {  // PEFT's modules_to_save on the tied lm_head: an untied copy trained in full
         c.method = "lora";
         c.modules_to_save = {"lm_head"};
       }},
      {"lora+recomp", "LoRA r=8, recompute",
       [](TrainConfig& c) {
         c.method = "lora";
         c.recompute = true;
       }},
      {"prompt", "prompt, 20 tokens", [](TrainConfig& c) { c.method = "prompt"; }},
      {"prefix", "prefix, 20 tokens", [](TrainConfig& c) { c.method = "prefix"; }},
      {"prefix+mlp", "prefix + MLP",
       [](TrainConfig& c) {
         c.method = "prefix";
         c.prefix_projection = true;
       }},
  };
  return v;
}

const MethodVariant& method_variant(std::string_view name) {
  std::string names;
  for (const MethodVariant& v : method_variants()) {
    if (v.name == name) return v;
    names += names.empty() ? v.name : std::string(", ") + v.name;
  }
  fail("unknown method variant '{}' (one of {})", name, names);
}

}  // namespace mp::train
