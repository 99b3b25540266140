#include "models/gpt2.h"

#include <cmath>

#include "autograd/ops.h"

namespace mp::models {

using nn::Layout;

static bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

GPT2Attention::GPT2Attention(const ModelConfig& c) {
  const int C = c.hidden_size;
  c_attn = add_module("c_attn", std::make_shared<nn::Linear>(C, 3 * C, true, Layout::conv1d));
  c_proj = add_module("c_proj", std::make_shared<nn::Linear>(C, C, true, Layout::conv1d));
  resid_dropout = add_module("resid_dropout", std::make_shared<nn::Dropout>(c.resid_pdrop));
}

GPT2MLP::GPT2MLP(const ModelConfig& c) {
  c_fc = add_module("c_fc", std::make_shared<nn::Linear>(c.hidden_size, c.ffn_dim, true, Layout::conv1d));
  c_proj = add_module("c_proj", std::make_shared<nn::Linear>(c.ffn_dim, c.hidden_size, true, Layout::conv1d));
  dropout = add_module("dropout", std::make_shared<nn::Dropout>(c.resid_pdrop));
}

Variable GPT2MLP::forward(const Variable& x) {
  Variable h = ag::gelu(c_fc->forward(x));      // (B, T, 4C), gelu_new: the tanh approximation
  return dropout->forward(c_proj->forward(h));  // (B, T, C)
}

GPT2Block::GPT2Block(const ModelConfig& c) {
  ln_1 = add_module("ln_1", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps));
  attn = add_module("attn", std::make_shared<GPT2Attention>(c));
  ln_2 = add_module("ln_2", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps));
  mlp = add_module("mlp", std::make_shared<GPT2MLP>(c));
}

GPT2Transformer::GPT2Transformer(const ModelConfig& c) {
  wte = add_module("wte", std::make_shared<nn::Embedding>(c.vocab_size, c.hidden_size));
  wpe = add_module("wpe", std::make_shared<nn::Embedding>(c.max_positions, c.hidden_size));
  drop = add_module("drop", std::make_shared<nn::Dropout>(c.embd_pdrop));
  h = add_module("h", std::make_shared<ModuleList<GPT2Block>>());
  for (int i = 0; i < c.num_layers; ++i) h->push_back(std::make_shared<GPT2Block>(c));
  ln_f = add_module("ln_f", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps));
}

GPT2::GPT2(const ModelConfig& config, uint64_t seed) : CausalLM(config) {
  transformer = add_module("transformer", std::make_shared<GPT2Transformer>(config_));
  if (!config_.tie_word_embeddings)
    lm_head = add_module("lm_head",
                         std::make_shared<nn::Linear>(config_.hidden_size, config_.vocab_size, false, Layout::torch));
  init_weights(seed);
}

Variable GPT2::embed_tokens(const Tensor& ids) const {
  return transformer->wte->forward(ids);  // (B, T) -> (B, T, C)
}

Variable GPT2::block_forward(int layer, const Variable& x, const ForwardOptions& opt) {
  GPT2Block& block = (*transformer->h)[size_t(layer)];
  // Attention: one GEMM makes q, k and v side by side.
  Variable qkv = block.attn->c_attn->forward(block.ln_1->forward(x));  // (B, T, 3C)
  const float scale = 1.f / std::sqrt(float(head_dim()));
  Variable y = self_attention(qkv, layer, scale, opt);  // (B, T, C)
  y = block.attn->resid_dropout->forward(block.attn->c_proj->forward(y));  // (B, T, C)
  Variable x1 = ag::add(x, y);                                            // (B, T, C)

  // MLP.
  return ag::add(x1, block.mlp->forward(block.ln_2->forward(x1)));  // (B, T, C)
}

Variable GPT2::hidden_states(const Tensor& ids, const ForwardOptions& opt) {
  auto [B, T] = check_inputs(ids, opt);
  // GPT-2 numbers positions past .. past + T - 1 whatever the mask says (HF's forward).
  Tensor pos = position_ids(B, T, opt, /*from_mask=*/false);  // (B, T)
  Variable tokens = opt.inputs_embeds.defined() ? opt.inputs_embeds : embed_tokens(ids);  // (B, T, C)
  Variable x = ag::add(tokens, transformer->wpe->forward(pos));                          // (B, T, C)
  x = transformer->drop->forward(x);
  x = run_blocks(x, opt);                // (B, T, C)
  return transformer->ln_f->forward(x);  // (B, T, C)
}

void GPT2::init_weights(uint64_t seed) {
  const double std = config_.initializer_range;
  // GPT-2's scaled init: each residual branch's output projection gets
  // std / sqrt(2 * n_layer), so the residual stream's variance does not grow
  // with depth (two branches per layer).
  const double proj_std = std / std::sqrt(2.0 * config_.num_layers);
  for (const auto& [name, p] : named_parameters()) {
    bool layer_norm = name.find(".ln_") != std::string::npos;
    if (layer_norm && ends_with(name, ".weight"))
      init_parameter(p, Init::ones, 0, seed, name);
    else if (ends_with(name, ".bias"))
      init_parameter(p, Init::zeros, 0, seed, name);
    else if (ends_with(name, "c_proj.weight"))
      init_parameter(p, Init::normal, proj_std, seed, name);
    else
      init_parameter(p, Init::normal, std, seed, name);
  }
}

std::string GPT2::canonical_name(const std::string& checkpoint_name) const {
  if (checkpoint_name.rfind("transformer.", 0) == 0 || checkpoint_name.rfind("lm_head.", 0) == 0)
    return checkpoint_name;
  return "transformer." + checkpoint_name;
}

bool GPT2::ignorable_checkpoint_key(const std::string& name) const {
  return ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias") ||
         CausalLM::ignorable_checkpoint_key(name);
}

}  // namespace mp::models
