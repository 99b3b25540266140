// ModelConfig: the shape of a GPT-2 or OPT model, read from a Hugging Face
// config.json or picked from the built-in names used by benchmarks.
//
// One struct serves both architectures: the fields they share (layers, heads,
// width, positions, vocabulary) have one name here, whatever each HF config
// calls them, so code that only needs the shape (PEFT, the memory report,
// generation) never asks which model it has.
//
//   HF GPT-2 key          HF OPT key                 here
//   n_layer               num_hidden_layers          num_layers
//   n_head                num_attention_heads        num_heads
//   n_embd                hidden_size                hidden_size
//   n_inner (null: 4*C)   ffn_dim                    ffn_dim
//   n_positions           max_position_embeddings    max_positions
//   vocab_size            vocab_size                 vocab_size
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mp::models {

enum class Arch : uint8_t { gpt2, opt };
std::string_view arch_name(Arch a);  // "gpt2" / "opt", HF's model_type

struct ModelConfig {
  Arch arch = Arch::gpt2;
  int num_layers = 0;
  int num_heads = 0;
  int hidden_size = 0;  // C, the residual stream's width
  int ffn_dim = 0;      // the MLP's inner width
  int max_positions = 0;
  int vocab_size = 0;
  float layer_norm_eps = 1e-5f;
  float initializer_range = 0.02f;  // std of the normal init (OPT: init_std)
  bool tie_word_embeddings = true;  // lm_head shares the token embedding table

  // Dropout probabilities. GPT-2 has three; OPT has `dropout` (embeddings and
  // residual branches) and `attention_dropout`.
  float embd_pdrop = 0.1f;
  float resid_pdrop = 0.1f;
  float attn_pdrop = 0.1f;

  // OPT only.
  int word_embed_proj_dim = 0;       // the embedding width; != hidden_size adds project_in/out
  bool do_layer_norm_before = true;  // pre-LN (true) or post-LN (false, opt-350m)
  bool remove_final_layer_norm = false;  // HF's _remove_final_layer_norm
  bool enable_bias = true;
  bool layer_norm_elementwise_affine = true;

  // Special tokens (-1 when the config has none).
  int bos_token_id = -1;
  int eos_token_id = -1;
  int pad_token_id = -1;

  int head_dim() const { return hidden_size / num_heads; }
  // OPT's token embedding width (word_embed_proj_dim); GPT-2's is hidden_size.
  int embed_dim() const { return arch == Arch::opt ? word_embed_proj_dim : hidden_size; }
  // OPT has a final layer norm only when pre-LN and not removed; GPT-2 always (ln_f).
  bool has_final_layer_norm() const {
    return arch == Arch::gpt2 || (do_layer_norm_before && !remove_final_layer_norm);
  }

  // The config as HF writes it (config.json text), loadable by transformers.
  std::string to_json() const;
};

// Parse config.json text. `source` names the file in error messages. Throws
// mp::Error naming the source and key for a missing key, a value of the wrong
// type, a non-positive size, hidden size not divisible by heads, an unknown
// model_type or an activation other than GPT-2's gelu_new / OPT's relu.
ModelConfig parse_config(std::string_view json_text, const std::string& source);
// Read and parse a config.json file.
ModelConfig load_config(const std::string& path);

// Built-in configs for random-weight models, as HF publishes them: "gpt2",
// "gpt2-medium", "gpt2-large", "gpt2-xl", "opt-125m", "opt-350m", "opt-1.3b",
// "opt-2.7b", "opt-6.7b", and the small "gpt2-tiny" and "opt-tiny". The
// large ones are for planning (minipeft info); mp::Error for other names.
ModelConfig builtin_config(std::string_view name);
bool is_builtin_config(std::string_view name);
std::vector<std::string> builtin_config_names();

}  // namespace mp::models
