#include "models/opt.h"

#include <cmath>

#include "autograd/ops.h"
#include "engine/ops.h"

namespace mp::models {

using nn::Layout;

static bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

OPTAttention::OPTAttention(const ModelConfig& c) {
  const int C = c.hidden_size;
  k_proj = add_module("k_proj", std::make_shared<nn::Linear>(C, C, c.enable_bias));
  v_proj = add_module("v_proj", std::make_shared<nn::Linear>(C, C, c.enable_bias));
  q_proj = add_module("q_proj", std::make_shared<nn::Linear>(C, C, c.enable_bias));
  out_proj = add_module("out_proj", std::make_shared<nn::Linear>(C, C, c.enable_bias));
}

OPTDecoderLayer::OPTDecoderLayer(const ModelConfig& c) {
  const bool affine = c.layer_norm_elementwise_affine;
  self_attn = add_module("self_attn", std::make_shared<OPTAttention>(c));
  self_attn_layer_norm =
      add_module("self_attn_layer_norm", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps, affine));
  fc1 = add_module("fc1", std::make_shared<nn::Linear>(c.hidden_size, c.ffn_dim, c.enable_bias));
  fc2 = add_module("fc2", std::make_shared<nn::Linear>(c.ffn_dim, c.hidden_size, c.enable_bias));
  final_layer_norm =
      add_module("final_layer_norm", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps, affine));
  dropout = add_module("dropout", std::make_shared<nn::Dropout>(c.resid_pdrop));
}

OPTDecoder::OPTDecoder(const ModelConfig& c) {
  const int C = c.hidden_size, E = c.word_embed_proj_dim;
  // torch.nn.Embedding(padding_idx = pad): row `pad` gets no gradient from the
  // lookup (HF's OPT fixture depends on this: the tied lm_head still sends
  // that row a gradient).
  embed_tokens = add_module("embed_tokens", std::make_shared<nn::Embedding>(c.vocab_size, E, c.pad_token_id));
  embed_positions =
      add_module("embed_positions", std::make_shared<nn::Embedding>(c.max_positions + OPT::kPositionOffset, C));
  if (E != C) {
    project_out = add_module("project_out", std::make_shared<nn::Linear>(C, E, false));
    project_in = add_module("project_in", std::make_shared<nn::Linear>(E, C, false));
  }
  if (c.has_final_layer_norm())
    final_layer_norm = add_module(
        "final_layer_norm", std::make_shared<nn::LayerNorm>(C, c.layer_norm_eps, c.layer_norm_elementwise_affine));
  layers = add_module("layers", std::make_shared<ModuleList<OPTDecoderLayer>>());
  for (int i = 0; i < c.num_layers; ++i) layers->push_back(std::make_shared<OPTDecoderLayer>(c));
  dropout = add_module("dropout", std::make_shared<nn::Dropout>(c.embd_pdrop));
}

OPT::OPT(const ModelConfig& config, uint64_t seed) : CausalLM(config) {
  model = add_module("model", std::make_shared<OPTModel>(config_));
  if (!config_.tie_word_embeddings)
    lm_head = add_module("lm_head", std::make_shared<nn::Linear>(config_.embed_dim(), config_.vocab_size, false));
  init_weights(seed);
}

Variable OPT::embed_tokens(const Tensor& ids) const {
  return decoder().embed_tokens->forward(ids);  // (B, T) -> (B, T, E)
}

Variable OPT::block_forward(int layer, const Variable& x, const ForwardOptions& opt) {
  OPTDecoderLayer& l = (*decoder().layers)[size_t(layer)];
  const bool pre_ln = config_.do_layer_norm_before;

  // Self-attention branch.
  Variable h = pre_ln ? l.self_attn_layer_norm->forward(x) : x;  // (B, T, C)
  Variable q = l.self_attn->q_proj->forward(h);                  // (B, T, C)
  Variable k = l.self_attn->k_proj->forward(h);                  // (B, T, C)
  Variable v = l.self_attn->v_proj->forward(h);                  // (B, T, C)
  const float scale = 1.f / std::sqrt(float(head_dim()));
  Variable a = self_attention(q, k, v, layer, scale, opt);               // (B, T, C)
  a = l.dropout->forward(l.self_attn->out_proj->forward(a));             // (B, T, C)
  Variable x1 = ag::add(x, a);                                           // (B, T, C)
  if (!pre_ln) x1 = l.self_attn_layer_norm->forward(x1);

  // Feed-forward branch.
  h = pre_ln ? l.final_layer_norm->forward(x1) : x1;                  // (B, T, C)
  h = l.fc2->forward(ag::relu(l.fc1->forward(h)));                    // (B, T, F) -> (B, T, C)
  Variable x2 = ag::add(x1, l.dropout->forward(h));                   // (B, T, C)
  return pre_ln ? x2 : l.final_layer_norm->forward(x2);
}

Variable OPT::hidden_states(const Tensor& ids, const ForwardOptions& opt) {
  auto [B, T] = check_inputs(ids, opt);
  OPTDecoder& d = decoder();
  // Rows of embed_positions: position (from the mask, as HF) + 2.
  Tensor pos = position_ids(B, T, opt, /*from_mask=*/true, kPositionOffset);              // (B, T)
  Variable tokens = opt.inputs_embeds.defined() ? opt.inputs_embeds : embed_tokens(ids);  // (B, T, E)
  if (d.project_in) tokens = d.project_in->forward(tokens);                              // (B, T, C)
  Variable x = ag::add(tokens, d.embed_positions->forward(pos));                          // (B, T, C)
  x = d.dropout->forward(x);
  x = run_blocks(x, opt);  // (B, T, C)
  if (d.final_layer_norm) x = d.final_layer_norm->forward(x);
  if (d.project_out) x = d.project_out->forward(x);  // (B, T, E)
  return x;
}

void OPT::init_weights(uint64_t seed) {
  const double std = config_.initializer_range;
  for (const auto& [name, p] : named_parameters()) {
    bool layer_norm = name.find("layer_norm") != std::string::npos;
    if (layer_norm && ends_with(name, ".weight"))
      init_parameter(p, Init::ones, 0, seed, name);
    else if (ends_with(name, ".bias"))
      init_parameter(p, Init::zeros, 0, seed, name);
    else
      init_parameter(p, Init::normal, std, seed, name);
  }
  // The padding token's embedding starts at zero (torch.nn.Embedding(padding_idx)).
  if (config_.pad_token_id >= 0) ops::fill(decoder().embed_tokens->weight.value().select(0, config_.pad_token_id), 0.0);
}

}  // namespace mp::models
