// --model, --adapter and --base-dtype, shared by eval, generate, merge and info.
#pragma once
#include <CLI/CLI.hpp>
#include <map>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/dtype.h"
#include "models/base_dtype.h"

namespace mp::cli {

struct ModelChoice {
  std::string model = "gpt2-tiny";
  std::string adapter;  // an HF PEFT adapter folder, or ""
  std::vector<std::string> adapters;  // with several_adapters: "name=folder" (or "folder") each
  uint64_t seed = 0;    // for built-in names: the random init
  models::BaseDType base_dtype = models::BaseDType::f32;
  Device device = kCPU;
};

// An option taking f32 or bf16 (anything else is a usage error), default f32.
// The help names the choices (by default CLI11 would print the enum values as raw bytes).
inline void add_dtype_option(CLI::App* cmd, const std::string& flag, DType& d, const std::string& help) {
  cmd->add_option(flag, d, help)
      ->transform(CLI::CheckedTransformer(std::map<std::string, DType>{{"f32", DType::f32}, {"bf16", DType::bf16}})
                      .description("{f32, bf16}"))
      ->default_str("f32");
}

// --base-dtype f32|bf16|nf4: the storage of the base model's weights
// (models/base_dtype.h; also used by train and bench).
inline void add_base_dtype_option(CLI::App* cmd, models::BaseDType& b) {
  std::vector<std::string> names;
  for (models::BaseDType d : models::kBaseDTypes) names.emplace_back(models::base_dtype_name(d));
  cmd->add_option_function<std::string>(
         "--base-dtype", [&b](const std::string& s) { b = models::parse_base_dtype(s); },
         "base weight matrices in f32, bf16 (half the bytes) or nf4 (QLoRA: 4-bit Linear weights, bf16 "
         "embeddings); bf16 and nf4 are frozen: PEFT methods only")
      ->check(CLI::IsMember(names))
      ->default_str("f32");
}

// several_adapters: --adapter may be repeated, each "name=folder" (mixed batches).
inline void add_model_options(CLI::App* cmd, ModelChoice& m, bool adapter_required = false,
                              bool several_adapters = false) {
  cmd->add_option("--model", m.model, "built-in name (random weights) or HF model folder")->capture_default_str();
  auto* a = several_adapters
                ? cmd->add_option("--adapter", m.adapters,
                                  "HF PEFT adapter folder, or name=folder; repeat for several (rows of a --prompts or "
                                  "pairs file name theirs in an \"adapter\" field)")
                : cmd->add_option("--adapter", m.adapter,
                                  "HF PEFT adapter folder (adapter_config.json + adapter_model.safetensors)");
  if (adapter_required) a->required();
  cmd->add_option("--seed", m.seed, "seed of a built-in model's random weights")->capture_default_str();
  add_base_dtype_option(cmd, m.base_dtype);
  cmd->add_option_function<std::string>(
         "--device", [&m](const std::string& name) { m.device = parse_device(name); }, "cpu | cuda | cuda:N | sim")
      ->default_str("cpu");
}

}  // namespace mp::cli
