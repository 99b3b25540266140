#include "models/config.h"

#include <limits>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "nn/json_input.h"

namespace mp::models {

using json = nlohmann::json;

std::string_view arch_name(Arch a) { return a == Arch::gpt2 ? "gpt2" : "opt"; }

namespace {

// Typed access to one config.json object; every error names the file and key.
class ConfigReader {
 public:
  ConfigReader(const json& j, const std::string& source) : j_(j), source_(source) {}

  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

  // A positive size: sizes of zero or below make no model.
  int size(const char* key) const {
    if (!j_.contains(key)) fail("{}: missing key \"{}\"", source_, key);
    return positive(key, integer(key));
  }
  int size_or(const char* key, int fallback) const { return has(key) ? positive(key, integer(key)) : fallback; }
  // A token id: null or absent is -1 (none).
  int token_id(const char* key) const {
    if (!has(key)) return -1;
    int v = integer(key);
    if (v < 0) fail("{}: key \"{}\" must be a token id >= 0, not {}", source_, key, v);
    return v;
  }
  float number_or(const char* key, float fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_number()) fail("{}: key \"{}\" must be a number, not {}", source_, key, j_[key].dump());
    double v = j_[key].get<double>();
    if (!(v >= 0.0) || v > 1e6) fail("{}: key \"{}\" must be a number >= 0, not {}", source_, key, v);
    return float(v);
  }
  float probability_or(const char* key, float fallback) const {
    float p = number_or(key, fallback);
    if (p >= 1.f) fail("{}: key \"{}\" is a dropout probability and must be in [0, 1), not {}", source_, key, p);
    return p;
  }
  bool boolean_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_boolean()) fail("{}: key \"{}\" must be true or false, not {}", source_, key, j_[key].dump());
    return j_[key].get<bool>();
  }
  std::string string_or(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_string()) fail("{}: key \"{}\" must be a string, not {}", source_, key, j_[key].dump());
    return j_[key].get<std::string>();
  }
  const std::string& source() const { return source_; }

 private:
  int integer(const char* key) const {
    const json& v = j_[key];
    if (!v.is_number_integer()) fail("{}: key \"{}\" must be an integer, not {}", source_, key, v.dump());
    // Out of int range (either sign) is an error, not a wrap-around.
    if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(std::numeric_limits<int>::max())
                               : (v.get<int64_t>() > std::numeric_limits<int>::max() ||
                                  v.get<int64_t>() < std::numeric_limits<int>::min()))
      fail("{}: key \"{}\" is out of range: {}", source_, key, v.dump());
    return int(v.get<int64_t>());
  }
  int positive(const char* key, int v) const {
    if (v <= 0) fail("{}: key \"{}\" must be positive, not {}", source_, key, v);
    return v;
  }
  const json& j_;
  const std::string& source_;
};

void check_activation(const ConfigReader& r, const std::string& expected) {
  std::string act = r.string_or("activation_function", expected);
  if (act != expected)
    fail("{}: activation_function \"{}\" is not supported (this model type needs \"{}\")", r.source(), act,
         expected);
}

ModelConfig parse_gpt2(const ConfigReader& r) {
  ModelConfig c;
  c.arch = Arch::gpt2;
  c.num_layers = r.size("n_layer");
  c.num_heads = r.size("n_head");
  c.hidden_size = r.size("n_embd");
  c.max_positions = r.size("n_positions");
  c.vocab_size = r.size("vocab_size");
  // n_inner: null means 4 * n_embd. 4 * n_embd may not fit an int for absurd widths.
  if (!r.has("n_inner") && int64_t(c.hidden_size) * 4 > std::numeric_limits<int>::max())
    fail("{}: key \"n_embd\" is too large: {}", r.source(), c.hidden_size);
  c.ffn_dim = r.size_or("n_inner", 4 * c.hidden_size);
  c.layer_norm_eps = r.number_or("layer_norm_epsilon", 1e-5f);
  c.initializer_range = r.number_or("initializer_range", 0.02f);
  check_activation(r, "gelu_new");
  c.embd_pdrop = r.probability_or("embd_pdrop", 0.1f);
  c.resid_pdrop = r.probability_or("resid_pdrop", 0.1f);
  c.attn_pdrop = r.probability_or("attn_pdrop", 0.1f);
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", true);
  c.word_embed_proj_dim = c.hidden_size;
  c.bos_token_id = r.token_id("bos_token_id");
  c.eos_token_id = r.token_id("eos_token_id");
  c.pad_token_id = r.token_id("pad_token_id");
  return c;
}

ModelConfig parse_opt(const ConfigReader& r) {
  ModelConfig c;
  c.arch = Arch::opt;
  c.num_layers = r.size("num_hidden_layers");
  c.num_heads = r.size("num_attention_heads");
  c.hidden_size = r.size("hidden_size");
  c.ffn_dim = r.size("ffn_dim");
  c.max_positions = r.size("max_position_embeddings");
  c.vocab_size = r.size("vocab_size");
  c.word_embed_proj_dim = r.size_or("word_embed_proj_dim", c.hidden_size);
  c.do_layer_norm_before = r.boolean_or("do_layer_norm_before", true);
  c.remove_final_layer_norm = r.boolean_or("_remove_final_layer_norm", false);
  c.enable_bias = r.boolean_or("enable_bias", true);
  c.layer_norm_elementwise_affine = r.boolean_or("layer_norm_elementwise_affine", true);
  c.initializer_range = r.number_or("init_std", 0.02f);
  check_activation(r, "relu");
  c.embd_pdrop = c.resid_pdrop = r.probability_or("dropout", 0.1f);
  c.attn_pdrop = r.probability_or("attention_dropout", 0.f);
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", true);
  c.bos_token_id = r.token_id("bos_token_id");
  c.eos_token_id = r.token_id("eos_token_id");
  c.pad_token_id = r.token_id("pad_token_id");
  if (c.pad_token_id >= c.vocab_size)
    fail("{}: pad_token_id {} is outside the vocabulary (vocab_size {})", r.source(), c.pad_token_id,
         c.vocab_size);
  return c;
}

ModelConfig config_of(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: expected a JSON object, not {}", source, j.type_name());
  ConfigReader r(j, source);
  if (!j.contains("model_type")) fail("{}: missing key \"model_type\"", source);
  std::string type = r.string_or("model_type", "");
  ModelConfig c;
  if (type == "gpt2")
    c = parse_gpt2(r);
  else if (type == "opt")
    c = parse_opt(r);
  else
    fail("{}: model_type \"{}\" is not supported (supported: \"gpt2\", \"opt\")", source, type);
  if (c.hidden_size % c.num_heads != 0)
    fail("{}: the hidden size {} is not divisible by the number of attention heads {}", source, c.hidden_size,
         c.num_heads);
  for (int id : {c.bos_token_id, c.eos_token_id})
    if (id >= c.vocab_size)
      fail("{}: special token id {} is outside the vocabulary (vocab_size {})", source, id, c.vocab_size);
  return c;
}

}  // namespace

ModelConfig parse_config(std::string_view json_text, const std::string& source) {
  return config_of(nn::parse_json(json_text, {source}), source);
}

ModelConfig load_config(const std::string& path) { return config_of(nn::read_json_file(path, "model config"), path); }

std::string ModelConfig::to_json() const {
  json j;
  auto token = [](int id) { return id < 0 ? json(nullptr) : json(id); };
  if (arch == Arch::gpt2) {
    j = {{"architectures", {"GPT2LMHeadModel"}},
         {"model_type", "gpt2"},
         {"activation_function", "gelu_new"},
         {"n_layer", num_layers},
         {"n_head", num_heads},
         {"n_embd", hidden_size},
         {"n_inner", ffn_dim == 4 * hidden_size ? json(nullptr) : json(ffn_dim)},
         {"n_positions", max_positions},
         {"n_ctx", max_positions},
         {"vocab_size", vocab_size},
         {"layer_norm_epsilon", layer_norm_eps},
         {"initializer_range", initializer_range},
         {"embd_pdrop", embd_pdrop},
         {"resid_pdrop", resid_pdrop},
         {"attn_pdrop", attn_pdrop}};
  } else {
    j = {{"architectures", {"OPTForCausalLM"}},
         {"model_type", "opt"},
         {"activation_function", "relu"},
         {"num_hidden_layers", num_layers},
         {"num_attention_heads", num_heads},
         {"hidden_size", hidden_size},
         {"ffn_dim", ffn_dim},
         {"max_position_embeddings", max_positions},
         {"vocab_size", vocab_size},
         {"word_embed_proj_dim", word_embed_proj_dim},
         {"do_layer_norm_before", do_layer_norm_before},
         {"_remove_final_layer_norm", remove_final_layer_norm},
         {"enable_bias", enable_bias},
         {"layer_norm_elementwise_affine", layer_norm_elementwise_affine},
         {"init_std", initializer_range},
         {"dropout", resid_pdrop},
         {"attention_dropout", attn_pdrop}};
  }
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = token(bos_token_id);
  j["eos_token_id"] = token(eos_token_id);
  j["pad_token_id"] = token(pad_token_id);
  j["torch_dtype"] = "float32";
  return j.dump(2) + "\n";
}

// ---- built-in configs ----

namespace {

// What both families share: a transformer of this size with a 4x feed-forward.
ModelConfig sized_config(Arch arch, int layers, int heads, int width, int positions, int vocab) {
  ModelConfig c;
  c.arch = arch;
  c.num_layers = layers;
  c.num_heads = heads;
  c.hidden_size = width;
  c.ffn_dim = 4 * width;
  c.max_positions = positions;
  c.vocab_size = vocab;
  c.word_embed_proj_dim = width;
  return c;
}

ModelConfig gpt2_config(int layers, int heads, int width, int positions) {
  ModelConfig c = sized_config(Arch::gpt2, layers, heads, width, positions, 50257);
  c.bos_token_id = c.eos_token_id = 50256;
  return c;
}

ModelConfig opt_config(int layers, int heads, int width, int positions, int proj_dim, bool pre_ln) {
  ModelConfig c = sized_config(Arch::opt, layers, heads, width, positions, 50272);
  c.word_embed_proj_dim = proj_dim;
  c.do_layer_norm_before = pre_ln;
  c.embd_pdrop = c.resid_pdrop = 0.1f;
  c.attn_pdrop = 0.f;
  c.bos_token_id = c.eos_token_id = 2;
  c.pad_token_id = 1;
  return c;
}

struct Builtin {
  const char* name;
  ModelConfig config;
};

const std::vector<Builtin>& builtins() {
  static const std::vector<Builtin> list = {
      {"gpt2", gpt2_config(12, 12, 768, 1024)},
      {"gpt2-medium", gpt2_config(24, 16, 1024, 1024)},
      {"gpt2-large", gpt2_config(36, 20, 1280, 1024)},
      {"gpt2-xl", gpt2_config(48, 25, 1600, 1024)},
      {"gpt2-tiny", gpt2_config(2, 4, 64, 256)},
      {"opt-125m", opt_config(12, 12, 768, 2048, 768, true)},
      {"opt-350m", opt_config(24, 16, 1024, 2048, 512, false)},
      {"opt-1.3b", opt_config(24, 32, 2048, 2048, 2048, true)},
      {"opt-2.7b", opt_config(32, 32, 2560, 2048, 2560, true)},
      {"opt-6.7b", opt_config(32, 32, 4096, 2048, 4096, true)},
      {"opt-tiny", opt_config(2, 4, 64, 256, 64, true)},
  };
  return list;
}

}  // namespace

std::vector<std::string> builtin_config_names() {
  std::vector<std::string> names;
  for (const Builtin& b : builtins()) names.push_back(b.name);
  return names;
}

bool is_builtin_config(std::string_view name) {
  for (const Builtin& b : builtins())
    if (name == b.name) return true;
  return false;
}

ModelConfig builtin_config(std::string_view name) {
  for (const Builtin& b : builtins())
    if (name == b.name) return b.config;
  std::string names;
  for (const std::string& n : builtin_config_names()) names += (names.empty() ? "" : ", ") + n;
  fail("unknown model \"{}\": not a directory and not a built-in name ({})", name, names);
}

}  // namespace mp::models
