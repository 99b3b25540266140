// The memory report at GPT-2 124M shape (built-in config "gpt2", random
// weights), B = 4, T = 64, one AdamW training step per method: predicted
// bytes per category (peft/memory_report.h) beside the ledger's peaks, and
// LoRA's total peak as a fraction of full fine-tuning's, with the base in f32
// and in bf16.
//
//   ./build/bench/memory_report            (exit 1 if a prediction is off by more than 5%)
#include <cstdio>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "engine/error.h"
#include "peft/memory_report.h"

using namespace mp;

int main() try {
  const models::ModelConfig config = models::builtin_config("gpt2");
  const int64_t B = 4, T = 64;
  const peft::PeftConfig lora = peft::PeftConfig::lora({.r = 8, .lora_alpha = 16, .target_modules = {"c_attn"}});
  const std::vector<std::tuple<std::string, std::optional<peft::PeftConfig>, DType>> methods = {
      {"full fine-tuning", std::nullopt, DType::f32},
      {"LoRA r=8 on c_attn", lora, DType::f32},
      {"LoRA r=8 on c_attn, bf16 base", lora, DType::bf16},
      {"prompt tuning, 20 virtual tokens", peft::PeftConfig::prompt_tuning({.num_virtual_tokens = 20}), DType::f32},
      {"prefix tuning, 20 virtual tokens", peft::PeftConfig::prefix_tuning({.num_virtual_tokens = 20}), DType::f32},
  };
  bool ok = true;
  size_t full_total = 0, lora_total[2] = {};
  for (const auto& [title, method, dtype] : methods) {
    const peft::MemoryBytes predicted = peft::predict_training_memory(config, method, B, T, dtype);
    const peft::MemoryBytes measured = peft::measure_training_memory(config, method, B, T, dtype);
    std::printf("%s\n", peft::memory_report(predicted, measured, "GPT-2 124M, B=4, T=64: " + title).c_str());
    const double ratio = double(measured.activations) / double(predicted.activations);
    ok = ok && ratio > 0.95 && ratio < 1.05 && measured.weights == predicted.weights;
    if (!method) full_total = measured.total();
    if (method && method->as_lora()) lora_total[dtype == DType::bf16] = measured.total();
  }
  std::printf("LoRA total peak / full FT total peak: %.3f with an f32 base (target <= 0.35), %.3f with a bf16 base\n",
              double(lora_total[0]) / double(full_total), double(lora_total[1]) / double(full_total));
  return ok ? 0 : 1;
} catch (const mp::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
