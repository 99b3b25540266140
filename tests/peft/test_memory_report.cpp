// The memory report's prediction against the ledger, at a small GPT-2 shape
// (bench/memory_report.cpp runs the 124M shape): grads, optimizer state,
// weights and adapter bytes exactly, activations within 5%.
#include <doctest/doctest.h>

#include <iostream>

#include "peft/memory_report.h"

namespace mp::test {
namespace {

models::ModelConfig small_gpt2() {
  models::ModelConfig c = models::builtin_config("gpt2-tiny");  // 4 heads, C = 64
  c.num_layers = 3;
  c.vocab_size = 512;  // small, so that the per-layer terms, not the logits, dominate the activations
  return c;
}

void check_method(const std::string& title, const std::optional<peft::PeftConfig>& method,
                  DType weight_dtype = DType::f32) {
  const models::ModelConfig config = small_gpt2();
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

TEST_CASE("memory report: predicted within 5% of the ledger (small GPT-2)") {
  SUBCASE("full fine-tuning") { check_method("full FT", std::nullopt); }
  SUBCASE("LoRA r=8 on c_attn") {
    check_method("LoRA", peft::PeftConfig::lora({.r = 8, .lora_alpha = 16, .target_modules = {"c_attn"}}));
  }
  SUBCASE("LoRA with dropout, all linears") {
    check_method("LoRA all", peft::PeftConfig::lora({.r = 4, .lora_alpha = 8, .lora_dropout = 0.1f,
                                                     .target_modules = {"c_attn", "c_proj", "c_fc"}}));
  }
  SUBCASE("LoRA r=8 on c_attn, bf16 base") {
    check_method("LoRA, bf16 base", peft::PeftConfig::lora({.r = 8, .lora_alpha = 16, .target_modules = {"c_attn"}}),
                 DType::bf16);
  }
  SUBCASE("prompt tuning") { check_method("prompt", peft::PeftConfig::prompt_tuning({.num_virtual_tokens = 8})); }
  SUBCASE("prefix tuning") { check_method("prefix", peft::PeftConfig::prefix_tuning({.num_virtual_tokens = 8})); }
  SUBCASE("prefix tuning with projection") {
    check_method("prefix+MLP", peft::PeftConfig::prefix_tuning(
                                   {.num_virtual_tokens = 8, .prefix_projection = true, .encoder_hidden_size = 32}));
  }
}

}  // namespace
}  // namespace mp::test
