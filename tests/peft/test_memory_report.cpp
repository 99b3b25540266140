// The memory report's prediction against the ledger, at small GPT-2 and OPT
// shapes (bench/memory_report.cpp runs the 124M/125m shapes): grads,
// optimizer state, weights and adapter bytes exactly, activations within 5%.
#include <doctest/doctest.h>

#include <iostream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "peft/memory_report.h"

namespace mp::test {
namespace {

models::ModelConfig small_gpt2() {
  models::ModelConfig c = models::builtin_config("gpt2-tiny");  // 4 heads, C = 64
  c.num_layers = 3;
  c.vocab_size = 512;  // small, so that the per-layer terms, not the logits, dominate the activations
  return c;
}

// opt-125m's layout (pre-LN, E = C) at opt-tiny's width.
models::ModelConfig small_opt() {
  models::ModelConfig c = models::builtin_config("opt-tiny");  // 4 heads, C = 64
  c.num_layers = 3;
  c.vocab_size = 512;
  return c;
}

// opt-350m's layout: post-LN (no final layer norm) and E != C, so that
// project_in and project_out exist.
models::ModelConfig small_opt_post_ln() {
  models::ModelConfig c = small_opt();
  c.do_layer_norm_before = false;
  c.word_embed_proj_dim = c.hidden_size / 2;
  return c;
}

void check_method(const models::ModelConfig& config, const std::string& title,
                  const std::optional<peft::PeftConfig>& method, DType weight_dtype = DType::f32) {
  const int64_t B = 4, T = 32;
  peft::MemoryBytes predicted = peft::predict_training_memory(config, method, B, T, weight_dtype);
  peft::MemoryBytes measured = peft::measure_training_memory(config, method, B, T, weight_dtype);
  MESSAGE(peft::memory_report(predicted, measured, title));
  CHECK(measured.weights == predicted.weights);
  CHECK(measured.adapter == predicted.adapter);
  CHECK(measured.grads == predicted.grads);
  CHECK(measured.optimizer == predicted.optimizer);
  const double ratio = double(measured.activations) / double(predicted.activations);
  CHECK_MESSAGE(std::abs(ratio - 1.0) < 0.05, title << ": activations measured/predicted " << ratio);
}

// The same methods for every model: full FT, LoRA on the attention's input
// projection(s) (f32 and bf16 base), LoRA with dropout on every linear
// layer, prompt and prefix tuning.
void check_methods(const models::ModelConfig& config, const std::string& name, const std::vector<std::string>& lora,
                   const std::vector<std::string>& all_linears) {
  SUBCASE("full fine-tuning") { check_method(config, name + " full FT", std::nullopt); }
  const peft::PeftConfig lora8 = peft::PeftConfig::lora({.r = 8, .lora_alpha = 16, .target_modules = lora});
  SUBCASE("LoRA r=8, default targets") { check_method(config, name + " LoRA", lora8); }
  SUBCASE("LoRA with dropout, all linears") {
    check_method(config, name + " LoRA all",
                 peft::PeftConfig::lora(
                     {.r = 4, .lora_alpha = 8, .lora_dropout = 0.1f, .target_modules = all_linears}));
  }
  SUBCASE("LoRA r=8, default targets, bf16 base") {
    check_method(config, name + " LoRA, bf16 base", lora8, DType::bf16);
  }
  SUBCASE("prompt tuning") {
    check_method(config, name + " prompt", peft::PeftConfig::prompt_tuning({.num_virtual_tokens = 8}));
  }
  SUBCASE("prefix tuning") {
    check_method(config, name + " prefix", peft::PeftConfig::prefix_tuning({.num_virtual_tokens = 8}));
  }
  SUBCASE("prefix tuning with projection") {
    check_method(config, name + " prefix+MLP",
                 peft::PeftConfig::prefix_tuning(
                     {.num_virtual_tokens = 8, .prefix_projection = true, .encoder_hidden_size = 32}));
  }
}

const std::vector<std::string> kOptLinears = {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"};

TEST_CASE("memory report: predicted within 5% of the ledger (small GPT-2)") {
  check_methods(small_gpt2(), "GPT-2", {"c_attn"}, {"c_attn", "c_proj", "c_fc"});
}

TEST_CASE("memory report: predicted within 5% of the ledger (small OPT, pre-LN)") {
  check_methods(small_opt(), "OPT", {"q_proj", "v_proj"}, kOptLinears);
}

TEST_CASE("memory report: predicted within 5% of the ledger (small OPT, post-LN, project_in/out)") {
  check_methods(small_opt_post_ln(), "OPT post-LN", {"q_proj", "v_proj"}, kOptLinears);
}

TEST_CASE("memory report: LoRA targets the report does not model") {
  // OPT's project_in/project_out are linear layers get_peft_model can wrap,
  // but outside the transformer layers the prediction walks.
  const peft::PeftConfig project_in = peft::PeftConfig::lora({.r = 8, .target_modules = {"q_proj", "project_in"}});
  CHECK_THROWS_WITH_AS(peft::predict_training_memory(small_opt_post_ln(), project_in, 4, 32),
                       "the memory report does not model LoRA on model.decoder.project_in", Error);
  // GPT-2's name on an OPT model wraps nothing.
  CHECK_THROWS_WITH_AS(
      peft::predict_training_memory(small_opt(), peft::PeftConfig::lora({.r = 8, .target_modules = {"c_attn"}}), 4, 32),
      "the LoRA targets name none of the transformer layers' linear layers", Error);
}

}  // namespace
}  // namespace mp::test
