// --model and --adapter, shared by eval, generate, merge and info.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace mp::cli {

struct ModelChoice {
  std::string model = "gpt2-tiny";
  std::string adapter;  // an HF PEFT adapter folder, or ""
  uint64_t seed = 0;    // for built-in names: the random init
};

inline void add_model_options(CLI::App* cmd, ModelChoice& m, bool adapter_required = false) {
  cmd->add_option("--model", m.model, "built-in name (random weights) or HF model folder")->capture_default_str();
  auto* a = cmd->add_option("--adapter", m.adapter, "HF PEFT adapter folder (adapter_config.json + adapter_model.safetensors)");
  if (adapter_required) a->required();
  cmd->add_option("--seed", m.seed, "seed of a built-in model's random weights")->capture_default_str();
}

}  // namespace mp::cli
