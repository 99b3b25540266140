// The memory report at GPT-2 124M shape (built-in config "gpt2", random
// weights), B = 4, T = 64, one AdamW training step per method: predicted
// bytes per category (peft/memory_report.h) beside the ledger's peaks, and
// LoRA's total peak as a fraction of full fine-tuning's.
//
//   ./build/bench/memory_report            (exit 1 if a prediction is off by more than 5%)
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/error.h"
#include "engine/memory.h"
#include "models/load.h"
#include "nn/adamw.h"
#include "peft/memory_report.h"
#include "peft/peft_model.h"

namespace {

using namespace mp;

// Forward + backward + AdamW once; the ledger's peaks per category.
peft::MemoryBytes training_step(const models::ModelConfig& config, const std::optional<peft::PeftConfig>& method,
                                int64_t B, int64_t T) {
  std::shared_ptr<models::CausalLM> model = models::make_model(config, 1);
  std::shared_ptr<peft::PeftModel> pm;
  if (method) pm = peft::get_peft_model(model, *method);
  nn::Module& trained = pm ? static_cast<nn::Module&>(*pm) : *model;
  trained.train();
  nn::AdamW opt(trained.named_parameters());
  std::vector<int32_t> v(size_t(B * T));
  for (size_t i = 0; i < v.size(); ++i) v[i] = int32_t((i * 7919 + 13) % size_t(config.vocab_size));
  Tensor ids = Tensor::from_vector(v, {B, T}, Tag::workspace);
  Ledger::instance().reset_peaks();
  {
    ag::Variable loss = pm ? pm->loss(ids, ids) : model->loss(ids, ids);
    loss.backward();
  }
  opt.step();
  return peft::measured_peaks();
}

}  // namespace

int main() try {
  const models::ModelConfig config = models::builtin_config("gpt2");
  const int64_t B = 4, T = 64;
  const std::vector<std::pair<std::string, std::optional<peft::PeftConfig>>> methods = {
      {"full fine-tuning", std::nullopt},
      {"LoRA r=8 on c_attn", peft::PeftConfig::lora({.r = 8, .lora_alpha = 16, .target_modules = {"c_attn"}})},
      {"prompt tuning, 20 virtual tokens", peft::PeftConfig::prompt_tuning({.num_virtual_tokens = 20})},
      {"prefix tuning, 20 virtual tokens", peft::PeftConfig::prefix_tuning({.num_virtual_tokens = 20})},
  };
  bool ok = true;
  size_t full_total = 0, lora_total = 0;
  for (const auto& [title, method] : methods) {
    const peft::MemoryBytes predicted = peft::predict_training_memory(config, method, B, T);
    const peft::MemoryBytes measured = training_step(config, method, B, T);
    std::printf("%s\n", peft::memory_report(predicted, measured, "GPT-2 124M, B=4, T=64: " + title).c_str());
    const double ratio = double(measured.activations) / double(predicted.activations);
    ok = ok && ratio > 0.95 && ratio < 1.05;
    if (!method) full_total = measured.total();
    if (method && method->as_lora()) lora_total = measured.total();
  }
  std::printf("LoRA total peak / full FT total peak: %.3f (target <= 0.35)\n", double(lora_total) / double(full_total));
  return ok ? 0 : 1;
} catch (const mp::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
