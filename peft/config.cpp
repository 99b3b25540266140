#include "peft/config.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "engine/error.h"
#include "nn/json_input.h"

namespace mp::peft {

using nlohmann::json;

std::string_view peft_type_name(PeftType t) {
  switch (t) {
    case PeftType::lora: return "LORA";
    case PeftType::prompt_tuning: return "PROMPT_TUNING";
    case PeftType::prefix_tuning: return "PREFIX_TUNING";
    case PeftType::ia3: return "IA3";
  }
  return "?";
}

std::string_view lora_bias_name(LoraBias b) {
  switch (b) {
    case LoraBias::none: return "none";
    case LoraBias::all: return "all";
    case LoraBias::lora_only: return "lora_only";
  }
  return "?";
}

float LoraConfig::scaling() const {
  return use_rslora ? lora_alpha / std::sqrt(float(r)) : lora_alpha / float(r);
}

int PeftConfig::num_virtual_tokens() const {
  if (auto* p = as_prompt_tuning()) return p->num_virtual_tokens;
  if (auto* p = as_prefix_tuning()) return p->num_virtual_tokens;
  return 0;
}

const std::vector<std::string>& PeftConfig::modules_to_save() const {
  static const std::vector<std::string> none;
  if (auto* c = as_lora()) return c->modules_to_save;
  if (auto* c = as_ia3()) return c->modules_to_save;
  return none;
}

// A regular expression std::regex accepts ("" = none given).
static void check_regex(const char* key, const std::string& re) {
  if (re.empty()) return;
  try {
    std::regex compiled(re);
  } catch (const std::regex_error& e) {
    fail("{} regex '{}' is not valid: {}", key, re, e.what());
  }
}

void PeftConfig::validate() const {
  if (auto* c = as_lora()) {
    if (c->r <= 0) fail("LoRA rank r must be > 0, got {}", c->r);
    if (!(c->lora_alpha > 0)) fail("lora_alpha must be > 0, got {}", c->lora_alpha);
    if (!(c->lora_dropout >= 0 && c->lora_dropout < 1)) fail("lora_dropout must be in [0, 1), got {}", c->lora_dropout);
    if (c->target_modules.empty() && c->target_modules_regex.empty())
      fail("LoRA needs target_modules (e.g. [\"c_attn\"] for GPT-2, [\"q_proj\", \"v_proj\"] for OPT)");
    check_regex("target_modules", c->target_modules_regex);
  } else if (auto* c = as_ia3()) {
    check_regex("target_modules", c->target_modules_regex);
    check_regex("feedforward_modules", c->feedforward_modules_regex);
    // PEFT's IA3Config.__post_init__: with both lists, feed-forward modules are targets.
    const bool both_lists = c->target_modules_regex.empty() && c->feedforward_modules_regex.empty();
    if (both_lists && !c->target_modules.empty())
      for (const std::string& f : c->feedforward_modules)
        if (std::find(c->target_modules.begin(), c->target_modules.end(), f) == c->target_modules.end())
          fail("feedforward_modules: '{}' is not in target_modules (feedforward_modules must be a subset)", f);
  } else {
    const int n = num_virtual_tokens();
    if (n <= 0) fail("num_virtual_tokens must be > 0, got {}", n);
    if (auto* p = as_prompt_tuning(); p && p->prompt_tuning_init == PromptTuningInit::text &&
                                      p->prompt_tuning_init_text.empty())
      fail("prompt_tuning_init TEXT needs prompt_tuning_init_text");
    if (auto* p = as_prefix_tuning(); p && p->prefix_projection && p->encoder_hidden_size <= 0)
      fail("prefix_projection needs encoder_hidden_size > 0, got {}", p->encoder_hidden_size);
  }
  for (const std::string& name : modules_to_save())
    if (name.empty()) fail("modules_to_save: an empty name would pick every module");
}

// The width, depth and heads a prompt method was made for must be the model's.
static void check_dims(const char* what, int token_dim, int num_layers, int num_heads, int model_dim,
                       const models::ModelConfig& m, const std::string& source) {
  auto check = [&](const char* key, int have, int want) {
    if (have != 0 && have != want)
      fail("{}: {} {} = {} but the {} model has {}", source, what, key, have, models::arch_name(m.arch), want);
  };
  check("token_dim", token_dim, model_dim);
  check("num_layers", num_layers, m.num_layers);
  check("num_attention_heads", num_heads, m.num_heads);
}

void PeftConfig::check_matches(const models::ModelConfig& m, const std::string& source) const {
  if (auto* p = as_prompt_tuning()) check_dims("prompt tuning", p->token_dim, p->num_layers, p->num_attention_heads, m.embed_dim(), m, source);
  if (auto* p = as_prefix_tuning()) check_dims("prefix tuning", p->token_dim, p->num_layers, p->num_attention_heads, m.hidden_size, m, source);
}

// ---------------------------------------------------------------------------
// JSON reading: typed getters that name the file and the key in errors.

namespace {

struct Reader {
  const json& j;
  const std::string& source;

  bool has(const char* key) const { return j.contains(key) && !j.at(key).is_null(); }
  [[noreturn]] void bad(const char* key, const char* want) const {
    fail("{}: key '{}' should be {}, got {}", source, key, want, j.at(key).dump());
  }
  int get_int(const char* key, int fallback) const {
    if (!has(key)) return fallback;
    const json& v = j.at(key);
    if (!v.is_number_integer()) bad(key, "an integer");
    const int64_t x = v.get<int64_t>();
    if (x < INT32_MIN || x > INT32_MAX) bad(key, "a 32-bit integer");
    return int(x);
  }
  float get_float(const char* key, float fallback) const {
    if (!has(key)) return fallback;
    const json& v = j.at(key);
    if (!v.is_number()) bad(key, "a number");
    return v.get<float>();
  }
  bool get_bool(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = j.at(key);
    if (!v.is_boolean()) bad(key, "true or false");
    return v.get<bool>();
  }
  std::string get_string(const char* key, std::string fallback = "") const {
    if (!has(key)) return fallback;
    const json& v = j.at(key);
    if (!v.is_string()) bad(key, "a string");
    return v.get<std::string>();
  }
  std::vector<std::string> get_strings(const char* key) const {
    std::vector<std::string> out;
    if (!has(key)) return out;
    const json& v = j.at(key);
    if (!v.is_array()) bad(key, "a list of strings");
    for (const json& e : v) {
      if (!e.is_string()) bad(key, "a list of strings");
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  // A feature of PEFT we do not implement must be absent, null, false or empty.
  void require_unset(const char* key, const char* feature) const {
    if (!has(key)) return;
    const json& v = j.at(key);
    if ((v.is_boolean() && !v.get<bool>()) || ((v.is_object() || v.is_array()) && v.empty())) return;
    fail("{}: {} ('{}': {}) is not supported", source, feature, key, v.dump());
  }
};

// The keys HF PEFT 0.13 writes for each method, with its defaults; a config
// we write starts from these so that it has exactly HF's fields.
json hf_defaults(PeftType t) {
  json j = {{"auto_mapping", nullptr}, {"base_model_name_or_path", nullptr}, {"inference_mode", false},
            {"peft_type", std::string(peft_type_name(t))}, {"revision", nullptr}, {"task_type", "CAUSAL_LM"}};
  switch (t) {
    case PeftType::lora:
      j.update({{"alpha_pattern", json::object()}, {"bias", "none"}, {"fan_in_fan_out", false},
                {"init_lora_weights", true}, {"layer_replication", nullptr}, {"layers_pattern", nullptr},
                {"layers_to_transform", nullptr}, {"loftq_config", json::object()}, {"lora_alpha", 8},
                {"lora_dropout", 0.0}, {"megatron_config", nullptr}, {"megatron_core", "megatron.core"},
                {"modules_to_save", nullptr}, {"r", 8}, {"rank_pattern", json::object()},
                {"target_modules", nullptr}, {"use_dora", false}, {"use_rslora", false}});
      break;
    case PeftType::prompt_tuning:
      j.update({{"num_attention_heads", nullptr}, {"num_layers", nullptr}, {"num_transformer_submodules", 1},
                {"num_virtual_tokens", nullptr}, {"prompt_tuning_init", "RANDOM"},
                {"prompt_tuning_init_text", nullptr}, {"token_dim", nullptr}, {"tokenizer_kwargs", nullptr},
                {"tokenizer_name_or_path", nullptr}});
      break;
    case PeftType::prefix_tuning:
      j.update({{"encoder_hidden_size", nullptr}, {"num_attention_heads", nullptr}, {"num_layers", nullptr},
                {"num_transformer_submodules", 1}, {"num_virtual_tokens", nullptr},
                {"prefix_projection", false}, {"token_dim", nullptr}});
      break;
    case PeftType::ia3:
      j.update({{"exclude_modules", nullptr}, {"fan_in_fan_out", false}, {"feedforward_modules", nullptr},
                {"init_ia3_weights", true}, {"modules_to_save", nullptr}, {"target_modules", nullptr}});
      break;
  }
  return j;
}

// The keys we interpret; everything else in a parsed file goes to `extra`.
const char* const kInterpreted[] = {
    "peft_type", "base_model_name_or_path", "task_type", "inference_mode", "r", "lora_alpha", "lora_dropout",
    "target_modules", "bias", "use_rslora", "use_dora", "fan_in_fan_out", "init_lora_weights", "modules_to_save",
    "num_virtual_tokens", "prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path",
    "token_dim", "num_layers", "num_attention_heads", "prefix_projection", "encoder_hidden_size",
    "feedforward_modules", "init_ia3_weights"};

// A module list as PEFT takes it: a list of names, or one string (a regex).
void get_modules(const Reader& r, const char* key, std::vector<std::string>& names, std::string& regex) {
  if (r.has(key) && r.j.at(key).is_string()) regex = r.get_string(key);
  else names = r.get_strings(key);
}

LoraConfig parse_lora(const Reader& r) {
  LoraConfig c;
  c.r = r.get_int("r", 8);
  c.lora_alpha = r.get_float("lora_alpha", 8.f);
  c.lora_dropout = r.get_float("lora_dropout", 0.f);
  get_modules(r, "target_modules", c.target_modules, c.target_modules_regex);
  const std::string bias = r.get_string("bias", "none");
  if (bias == "none") c.bias = LoraBias::none;
  else if (bias == "all") c.bias = LoraBias::all;
  else if (bias == "lora_only") c.bias = LoraBias::lora_only;
  else fail("{}: bias should be \"none\", \"all\" or \"lora_only\", got \"{}\"", r.source, bias);
  c.use_rslora = r.get_bool("use_rslora", false);
  c.use_dora = r.get_bool("use_dora", false);
  c.fan_in_fan_out = r.get_bool("fan_in_fan_out", false);
  if (r.has("init_lora_weights")) {
    const json& v = r.j.at("init_lora_weights");
    if (v.is_boolean()) c.init_lora_weights = v.get<bool>() ? LoraInit::kaiming : LoraInit::none;
    else if (v.is_string() && v.get<std::string>() == "gaussian") c.init_lora_weights = LoraInit::gaussian;
    else fail("{}: init_lora_weights {} is not supported (true, false or \"gaussian\")", r.source, v.dump());
  }
  c.modules_to_save = r.get_strings("modules_to_save");
  r.require_unset("rank_pattern", "a per-module rank");
  r.require_unset("alpha_pattern", "a per-module alpha");
  r.require_unset("layers_to_transform", "layers_to_transform");
  r.require_unset("layer_replication", "layer_replication");
  // Keys later PEFT releases (up to 0.21) write at their defaults; set, each changes which layers get
  // LoRA or what it computes, and loading such an adapter as plain LoRA would give another model.
  r.require_unset("exclude_modules", "excluding modules");
  r.require_unset("lora_bias", "a bias on LoRA B");
  r.require_unset("target_parameters", "LoRA on parameters");
  r.require_unset("trainable_token_indices", "trainable tokens");
  r.require_unset("alora_invocation_tokens", "Activated LoRA");
  r.require_unset("use_qalora", "QALoRA");
  r.require_unset("use_bdlora", "block-diagonal LoRA");
  r.require_unset("arrow_config", "Arrow routing");
  r.require_unset("kasa_config", "KaSA");
  r.require_unset("monteclora_config", "MonteCLoRA");
  r.require_unset("velora_config", "VeLoRA");
  // modules_to_save on one side of a tied head and embedding trains the copy on both sides (we untie them).
  r.require_unset("ensure_weight_tying", "one modules_to_save copy for a tied head and embedding");
  return c;
}

Ia3Config parse_ia3(const Reader& r) {
  Ia3Config c;
  get_modules(r, "target_modules", c.target_modules, c.target_modules_regex);
  get_modules(r, "feedforward_modules", c.feedforward_modules, c.feedforward_modules_regex);
  c.fan_in_fan_out = r.get_bool("fan_in_fan_out", false);
  c.init_ia3_weights = r.get_bool("init_ia3_weights", true);
  c.modules_to_save = r.get_strings("modules_to_save");
  r.require_unset("exclude_modules", "excluding modules");
  return c;
}

PromptTuningConfig parse_prompt(const Reader& r) {
  PromptTuningConfig c;
  c.num_virtual_tokens = r.get_int("num_virtual_tokens", 0);
  const std::string init = r.get_string("prompt_tuning_init", "RANDOM");
  if (init == "RANDOM") c.prompt_tuning_init = PromptTuningInit::random;
  else if (init == "TEXT") c.prompt_tuning_init = PromptTuningInit::text;
  else fail("{}: prompt_tuning_init should be \"RANDOM\" or \"TEXT\", got \"{}\"", r.source, init);
  c.prompt_tuning_init_text = r.get_string("prompt_tuning_init_text");
  c.tokenizer_name_or_path = r.get_string("tokenizer_name_or_path");
  c.token_dim = r.get_int("token_dim", 0);
  c.num_layers = r.get_int("num_layers", 0);
  c.num_attention_heads = r.get_int("num_attention_heads", 0);
  r.require_unset("modules_to_save", "modules_to_save with prompt tuning");
  return c;
}

PrefixTuningConfig parse_prefix(const Reader& r) {
  PrefixTuningConfig c;
  c.num_virtual_tokens = r.get_int("num_virtual_tokens", 0);
  c.prefix_projection = r.get_bool("prefix_projection", false);
  c.encoder_hidden_size = r.get_int("encoder_hidden_size", 0);
  c.token_dim = r.get_int("token_dim", 0);
  c.num_layers = r.get_int("num_layers", 0);
  c.num_attention_heads = r.get_int("num_attention_heads", 0);
  r.require_unset("modules_to_save", "modules_to_save with prefix tuning");
  return c;
}

// A number as Python's json writes it: 16 for an integral alpha, 0.05 otherwise.
json number(float x) {
  if (x == std::floor(x) && std::abs(x) < 1e9f) return int64_t(x);
  return double(x);
}
json number_or_null(int x) { return x > 0 ? json(x) : json(nullptr); }
json string_or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }
json modules(const std::vector<std::string>& names, const std::string& regex) {
  return regex.empty() ? json(names) : json(regex);
}
json list_or_null(const std::vector<std::string>& names) { return names.empty() ? json(nullptr) : json(names); }

}  // namespace

namespace {

PeftConfig config_of(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: adapter config should be a JSON object", source);
  const Reader r{j, source};
  if (!r.has("peft_type")) fail("{}: no peft_type", source);
  const std::string type = r.get_string("peft_type");
  PeftConfig c;
  if (type == "LORA") c.method = parse_lora(r);
  else if (type == "PROMPT_TUNING") c.method = parse_prompt(r);
  else if (type == "PREFIX_TUNING") c.method = parse_prefix(r);
  else if (type == "IA3") c.method = parse_ia3(r);
  else fail("{}: unknown peft_type \"{}\" (supported: LORA, PROMPT_TUNING, PREFIX_TUNING, IA3)", source, type);
  c.base_model_name_or_path = r.get_string("base_model_name_or_path");
  c.task_type = r.get_string("task_type", "CAUSAL_LM");
  if (c.task_type != "CAUSAL_LM") fail("{}: task_type \"{}\" is not supported (CAUSAL_LM only)", source, c.task_type);
  c.inference_mode = r.get_bool("inference_mode", false);
  if (c.is_prompt_method() && r.get_int("num_transformer_submodules", 1) != 1)
    fail("{}: num_transformer_submodules must be 1 for a causal LM", source);
  for (const auto& [key, value] : j.items()) {
    if (std::find(std::begin(kInterpreted), std::end(kInterpreted), key) == std::end(kInterpreted))
      c.extra[key] = value;
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail("{}: {}", source, e.what());
  }
  return c;
}

}  // namespace

PeftConfig parse_adapter_config(std::string_view text, const std::string& source) {
  return config_of(nn::parse_json(text, {source}), source);
}

std::string adapter_config_json(const PeftConfig& c) {
  json j = hf_defaults(c.peft_type());
  j.update(c.extra);
  j["base_model_name_or_path"] = string_or_null(c.base_model_name_or_path);
  j["task_type"] = c.task_type;
  j["inference_mode"] = c.inference_mode;
  if (auto* l = c.as_lora()) {
    j["r"] = l->r;
    j["lora_alpha"] = number(l->lora_alpha);
    j["lora_dropout"] = double(l->lora_dropout);
    j["target_modules"] = modules(l->target_modules, l->target_modules_regex);
    j["bias"] = std::string(lora_bias_name(l->bias));
    j["use_rslora"] = l->use_rslora;
    j["use_dora"] = l->use_dora;
    j["fan_in_fan_out"] = l->fan_in_fan_out;
    j["init_lora_weights"] = l->init_lora_weights == LoraInit::gaussian ? json("gaussian")
                                                                        : json(l->init_lora_weights == LoraInit::kaiming);
    j["modules_to_save"] = list_or_null(l->modules_to_save);
  } else if (auto* a = c.as_ia3()) {
    j["target_modules"] = modules(a->target_modules, a->target_modules_regex);
    j["feedforward_modules"] = modules(a->feedforward_modules, a->feedforward_modules_regex);
    j["fan_in_fan_out"] = a->fan_in_fan_out;
    j["init_ia3_weights"] = a->init_ia3_weights;
    j["modules_to_save"] = list_or_null(a->modules_to_save);
  } else if (auto* p = c.as_prompt_tuning()) {
    j["num_virtual_tokens"] = p->num_virtual_tokens;
    j["prompt_tuning_init"] = p->prompt_tuning_init == PromptTuningInit::text ? "TEXT" : "RANDOM";
    j["prompt_tuning_init_text"] = string_or_null(p->prompt_tuning_init_text);
    j["tokenizer_name_or_path"] = string_or_null(p->tokenizer_name_or_path);
    j["token_dim"] = number_or_null(p->token_dim);
    j["num_layers"] = number_or_null(p->num_layers);
    j["num_attention_heads"] = number_or_null(p->num_attention_heads);
  } else if (auto* p = c.as_prefix_tuning()) {
    j["num_virtual_tokens"] = p->num_virtual_tokens;
    j["prefix_projection"] = p->prefix_projection;
    j["encoder_hidden_size"] = number_or_null(p->encoder_hidden_size);
    j["token_dim"] = number_or_null(p->token_dim);
    j["num_layers"] = number_or_null(p->num_layers);
    j["num_attention_heads"] = number_or_null(p->num_attention_heads);
  }
  return j.dump(2);  // nlohmann's object keeps keys sorted, as json.dumps(sort_keys=True)
}

PeftConfig load_adapter_config(const std::string& path) {
  return config_of(nn::read_json_file(path, "adapter config"), path);
}

void save_adapter_config(const PeftConfig& c, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot write {}", tmp);
    out << adapter_config_json(c);
    out.flush();
    if (!out) fail("error writing {}", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail("cannot rename {} to {}: {}", tmp, path, ec.message());
}

}  // namespace mp::peft
