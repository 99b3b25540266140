// The memory report at GPT-2 124M shape (built-in config "gpt2") and at
// OPT-125m shape ("opt-125m"), random weights, B = 4, T = 64, one AdamW
// training step per method: predicted bytes per category
// (peft/memory_report.h) beside the ledger's peaks, and LoRA's total peak as
// a fraction of full fine-tuning's (GPT-2: with the base in f32 and in bf16).
//
//   ./build/bench/memory_report            (exit 1 if a prediction is off by more than 5%)
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "engine/error.h"
#include "peft/memory_report.h"

using namespace mp;

namespace {

struct Method {
  std::string title;
  std::optional<peft::PeftConfig> config;  // empty: full fine-tuning
  DType base_dtype = DType::f32;
};

// Print each method's report for one model; the measured totals, in order.
// `ok` turns false when an activation prediction is off by more than 5% or
// the weights differ.
std::vector<size_t> report(const models::ModelConfig& config, const std::string& model,
                           const std::vector<Method>& methods, bool& ok) {
  const int64_t B = 4, T = 64;
  std::vector<size_t> totals;
  for (const Method& m : methods) {
    const peft::MemoryBytes predicted = peft::predict_training_memory(config, m.config, B, T, m.base_dtype);
    const peft::MemoryBytes measured = peft::measure_training_memory(config, m.config, B, T, m.base_dtype);
    std::printf("%s\n", peft::memory_report(predicted, measured, model + ", B=4, T=64: " + m.title).c_str());
    const double ratio = double(measured.activations) / double(predicted.activations);
    ok = ok && ratio > 0.95 && ratio < 1.05 && measured.weights == predicted.weights;
    totals.push_back(measured.total());
  }
  return totals;
}

}  // namespace

int main() try {
  bool ok = true;
  const peft::PeftConfig prompt = peft::PeftConfig::prompt_tuning({.num_virtual_tokens = 20});
  const peft::PeftConfig prefix = peft::PeftConfig::prefix_tuning({.num_virtual_tokens = 20});

  const peft::PeftConfig gpt2_lora = peft::PeftConfig::lora({.r = 8, .lora_alpha = 16, .target_modules = {"c_attn"}});
  const std::vector<size_t> gpt2 = report(models::builtin_config("gpt2"), "GPT-2 124M",
                                          {{"full fine-tuning", std::nullopt},
                                           {"LoRA r=8 on c_attn", gpt2_lora},
                                           {"LoRA r=8 on c_attn, bf16 base", gpt2_lora, DType::bf16},
                                           {"prompt tuning, 20 virtual tokens", prompt},
                                           {"prefix tuning, 20 virtual tokens", prefix}},
                                          ok);
  std::printf("LoRA total peak / full FT total peak: %.3f with an f32 base (target <= 0.35), %.3f with a bf16 base\n\n",
              double(gpt2[1]) / double(gpt2[0]), double(gpt2[2]) / double(gpt2[0]));

  const peft::PeftConfig opt_lora =
      peft::PeftConfig::lora({.r = 8, .lora_alpha = 16, .target_modules = {"q_proj", "v_proj"}});
  const std::vector<size_t> opt = report(models::builtin_config("opt-125m"), "OPT-125m",
                                         {{"full fine-tuning", std::nullopt},
                                          {"LoRA r=8 on q_proj, v_proj", opt_lora},
                                          {"prompt tuning, 20 virtual tokens", prompt},
                                          {"prefix tuning, 20 virtual tokens", prefix}},
                                         ok);
  std::printf("OPT-125m LoRA total peak / full FT total peak: %.3f\n", double(opt[1]) / double(opt[0]));
  return ok ? 0 : 1;
} catch (const mp::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
