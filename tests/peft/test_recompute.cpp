// Activation recompute with each PEFT method, on GPT-2 and OPT (pre-LN and
// post-LN with project_in/out): the loss and every trainable gradient are the
// same bit for bit with and without it, dropout included (the model's and
// LoRA's). The prefix keys and values come into each checkpointed block as
// inputs, since they are not leaves (views of the prefix table or its MLP's
// output). Full fine-tuning: tests/models/test_recompute.cpp.
#include "../models/recompute_check.h"

#include "models/load.h"
#include "peft/peft_model.h"

using namespace mp;
using namespace mp::test;

namespace {

std::vector<std::pair<std::string, peft::PeftConfig>> methods(const models::ModelConfig& model) {
  peft::LoraConfig lora{.r = 4, .lora_alpha = 8.f, .lora_dropout = 0.1f};
  lora.target_modules = model.arch == models::Arch::gpt2 ? std::vector<std::string>{"c_attn", "c_fc"}
                                                         : std::vector<std::string>{"q_proj", "v_proj", "fc1"};
  peft::LoraConfig dora = lora;
  dora.use_dora = true;
  return {{"lora", peft::PeftConfig::lora(lora)},
          {"dora", peft::PeftConfig::lora(dora)},
          {"prefix", peft::PeftConfig::prefix_tuning({.num_virtual_tokens = 3})},
          {"prefix with projection",
           peft::PeftConfig::prefix_tuning({.num_virtual_tokens = 3, .prefix_projection = true, .encoder_hidden_size = 16})},
          {"prompt", peft::PeftConfig::prompt_tuning({.num_virtual_tokens = 3})}};
}

}  // namespace

TEST_CASE("recompute: LoRA, DoRA, prefix and prompt tuning give the same loss and gradients, bit for bit") {
  for (const auto& [model_name, config] : recompute_configs()) {
    for (const auto& [method, peft_config] : methods(config)) {
      CAPTURE(model_name);
      CAPTURE(method);
      std::shared_ptr<models::CausalLM> base = models::make_model(config, 21);
      auto pm = peft::get_peft_model(base, peft_config);
      Tensor ids = recompute_ids(2, 10, config.vocab_size);  // (B, T)
      check_recompute_is_exact(*pm, *base, [&] { return pm->loss(ids, ids); });
    }
  }
}
