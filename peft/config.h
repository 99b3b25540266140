// PEFT configurations, with HF PEFT's vocabulary, and adapter_config.json.
//
// One PeftConfig describes one adapter: the fields every method shares
// (peft_type, base_model_name_or_path, task_type, inference_mode, ...) plus
// the settings of its method, held in a std::variant:
//
//   PeftConfig c = PeftConfig::lora({.r = 8, .lora_alpha = 16, .target_modules = {"c_attn"}});
//   if (auto* lora = c.as_lora()) ...
//
// adapter_config.json is read and written as HF PEFT 0.13 writes it: the same
// keys (sorted, 2-space indent), the same value types, so a file written here
// is loaded by PeftModel.from_pretrained and the other way round. Keys we do
// not interpret (alpha_pattern, loftq_config, ...) are kept as read and
// written back unchanged.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/config.h"

namespace mp::peft {

enum class PeftType : uint8_t { lora, prompt_tuning, prefix_tuning, ia3 };
std::string_view peft_type_name(PeftType t);  // "LORA", "PROMPT_TUNING", "PREFIX_TUNING", "IA3"

// Which biases LoRA trains: none, every bias in the model, or only the biases
// of the layers that carry a LoRA adapter.
enum class LoraBias : uint8_t { none, all, lora_only };
std::string_view lora_bias_name(LoraBias b);  // "none", "all", "lora_only"

// How the LoRA matrices start (PEFT's init_lora_weights):
//   kaiming  (true, the default): A ~ kaiming_uniform(a = sqrt(5)) as torch.nn.Linear, B = 0
//   gaussian ("gaussian"):        A ~ N(0, (1/r)^2), B = 0
//   none     (false):             A and B both as torch.nn.Linear; the adapter is not a no-op
//                                 at the start (PEFT uses it for tests)
enum class LoraInit : uint8_t { kaiming, gaussian, none };

struct LoraConfig {
  int r = 8;
  float lora_alpha = 8.f;
  float lora_dropout = 0.f;
  // Module names or suffixes: "c_attn" matches "transformer.h.0.attn.c_attn"
  // (a name equal to the target, or ending in "." + target).
  std::vector<std::string> target_modules;
  // A target_modules given as one string is, as in PEFT, a regular
  // expression the whole module name must match (ECMAScript syntax).
  std::string target_modules_regex;
  LoraBias bias = LoraBias::none;
  bool use_rslora = false;      // scale alpha / sqrt(r) instead of alpha / r
  bool use_dora = false;        // DoRA (peft/dora.h): a trained magnitude per output channel
  bool fan_in_fan_out = false;  // the target stores W as (in, out) (GPT-2's Conv1D)
  LoraInit init_lora_weights = LoraInit::kaiming;
  // Modules trained in full next to the adapter and saved with it: a module
  // whose path ends with a name ("ln_f"), as PEFT's str.endswith (peft/modules_to_save.h).
  std::vector<std::string> modules_to_save;

  float scaling() const;  // alpha / r, or alpha / sqrt(r) with use_rslora
};

enum class PromptTuningInit : uint8_t { random, text };

struct PromptTuningConfig {
  int num_virtual_tokens = 0;
  PromptTuningInit prompt_tuning_init = PromptTuningInit::random;
  std::string prompt_tuning_init_text;  // TEXT init: its token embeddings, repeated or cut
  std::string tokenizer_name_or_path;   // TEXT init: where the tokenizer lives
  // Filled from the model by get_peft_model (0 = not yet known).
  int token_dim = 0;
  int num_layers = 0;
  int num_attention_heads = 0;
};

struct PrefixTuningConfig {
  int num_virtual_tokens = 0;
  bool prefix_projection = false;  // produce the prefixes with a two-layer MLP
  int encoder_hidden_size = 0;     // that MLP's hidden width
  // Filled from the model by get_peft_model (0 = not yet known).
  int token_dim = 0;
  int num_layers = 0;
  int num_attention_heads = 0;
};

// IA3 (Liu et al. 2022, T-Few; PEFT's IA3Config): a learned vector per
// target layer scales its output, or, for a feed-forward module, its input.
// Empty target_modules or feedforward_modules: PEFT's defaults for the model
// type, each filled in by get_peft_model (gpt2: c_attn, mlp.c_proj with mlp.c_proj feed-forward;
// opt: q_proj, k_proj, fc2 with fc2 feed-forward).
struct Ia3Config {
  std::vector<std::string> target_modules;  // suffixes, as LoraConfig's
  std::string target_modules_regex;         // one string: a full-match regex
  // Which targets scale their input. A list: a module whose name ends with
  // one of them (PEFT's str.endswith); a string: a full-match regex. A list
  // must be a subset of a list target_modules.
  std::vector<std::string> feedforward_modules;
  std::string feedforward_modules_regex;
  bool fan_in_fan_out = false;   // set from the layer kind, as for LoRA
  bool init_ia3_weights = true;  // vectors start at one (false: N(0, 1), PEFT's test init)
  std::vector<std::string> modules_to_save;  // as LoraConfig's
};

struct PeftConfig {
  // The order is PeftType's.
  std::variant<LoraConfig, PromptTuningConfig, PrefixTuningConfig, Ia3Config> method;
  std::string base_model_name_or_path;  // "" = unknown (written as null)
  std::string task_type = "CAUSAL_LM";
  bool inference_mode = false;
  // Keys of adapter_config.json that we keep but do not interpret.
  nlohmann::json extra = nlohmann::json::object();

  static PeftConfig lora(LoraConfig c) { return PeftConfig{std::move(c)}; }
  static PeftConfig prompt_tuning(PromptTuningConfig c) { return PeftConfig{std::move(c)}; }
  static PeftConfig prefix_tuning(PrefixTuningConfig c) { return PeftConfig{std::move(c)}; }
  static PeftConfig ia3(Ia3Config c) { return PeftConfig{std::move(c)}; }

  PeftType peft_type() const { return PeftType(method.index()); }
  LoraConfig* as_lora() { return std::get_if<LoraConfig>(&method); }
  const LoraConfig* as_lora() const { return std::get_if<LoraConfig>(&method); }
  PromptTuningConfig* as_prompt_tuning() { return std::get_if<PromptTuningConfig>(&method); }
  const PromptTuningConfig* as_prompt_tuning() const { return std::get_if<PromptTuningConfig>(&method); }
  PrefixTuningConfig* as_prefix_tuning() { return std::get_if<PrefixTuningConfig>(&method); }
  const PrefixTuningConfig* as_prefix_tuning() const { return std::get_if<PrefixTuningConfig>(&method); }
  Ia3Config* as_ia3() { return std::get_if<Ia3Config>(&method); }
  const Ia3Config* as_ia3() const { return std::get_if<Ia3Config>(&method); }
  // Prompt tuning or prefix tuning (adapters outside the model's layers).
  bool is_prompt_method() const { return as_prompt_tuning() || as_prefix_tuning(); }
  // num_virtual_tokens of a prompt method, 0 for LoRA and IA3.
  int num_virtual_tokens() const;
  // LoRA's or IA3's modules_to_save; empty for the prompt methods (their files are refused with one).
  const std::vector<std::string>& modules_to_save() const;

  // Throws mp::Error for values no model could take (r <= 0, alpha <= 0,
  // dropout outside [0, 1), no target modules, a bad regex, num_virtual_tokens <= 0,
  // TEXT init without text, projection without encoder_hidden_size,
  // IA3 feedforward_modules not within target_modules, an empty modules_to_save name).
  void validate() const;
  // The checks that need the model: prompt/prefix shapes (token_dim,
  // num_layers, num_attention_heads) when already filled in. `source` names
  // the file in errors.
  void check_matches(const models::ModelConfig& model, const std::string& source) const;
};

// adapter_config.json text <-> PeftConfig. `source` names the file in
// errors: not JSON, not an object, unknown or missing peft_type, a key of the
// wrong type, values validate() rejects.
PeftConfig parse_adapter_config(std::string_view json_text, const std::string& source);
std::string adapter_config_json(const PeftConfig& c);  // HF PEFT's layout: sorted keys, indent 2
PeftConfig load_adapter_config(const std::string& path);
void save_adapter_config(const PeftConfig& c, const std::string& path);  // atomic

}  // namespace mp::peft
