// OPT (Zhang et al. 2022) as Hugging Face's OPTForCausalLM, with its
// parameter names:
//
//   model.decoder.embed_tokens.weight           (V, E)       tied lm_head; row pad_token_id is padding
//   model.decoder.embed_positions.weight        (P + 2, C)   learned; row = position + 2
//   model.decoder.project_in.weight             (C, E)       only when E != C (opt-350m), no bias
//   model.decoder.project_out.weight            (E, C)       only when E != C, no bias
//   model.decoder.layers.{i}.self_attn.{q,k,v,out}_proj.{weight,bias}   (C, C) torch layout (out, in)
//   model.decoder.layers.{i}.self_attn_layer_norm.{weight,bias}         (C)
//   model.decoder.layers.{i}.fc1.{weight,bias}  (F, C)
//   model.decoder.layers.{i}.fc2.{weight,bias}  (C, F)
//   model.decoder.layers.{i}.final_layer_norm.{weight,bias}             (C)
//   model.decoder.final_layer_norm.{weight,bias}  (C)   only pre-LN models
//
// One layer, pre-LN (do_layer_norm_before, most OPT sizes):
//
//   x = x + out_proj(attn(self_attn_layer_norm(x)))
//   x = x + fc2(relu(fc1(final_layer_norm(x))))
//
// post-LN (opt-350m): the same branches on x itself, each LayerNorm applied
// after its residual add. q is scaled by head_dim^-0.5 (inside the attention
// kernel here; HF multiplies q_proj's output, the same maths).
//
// Positions come from the attention mask as in HF: pos = cumsum(mask)*mask - 1,
// so left padding does not shift a sequence's positions; a pad token gets -1
// (it reads row 1 of the table).
#pragma once
#include <memory>

#include "models/causal_lm.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"

namespace mp::models {

class OPTAttention : public nn::Module {
 public:
  explicit OPTAttention(const ModelConfig& c);

  std::shared_ptr<nn::Linear> k_proj, v_proj, q_proj, out_proj;  // (C, C) each
};

class OPTDecoderLayer : public nn::Module {
 public:
  explicit OPTDecoderLayer(const ModelConfig& c);

  std::shared_ptr<OPTAttention> self_attn;
  std::shared_ptr<nn::LayerNorm> self_attn_layer_norm;
  std::shared_ptr<nn::Linear> fc1;  // C -> F
  std::shared_ptr<nn::Linear> fc2;  // F -> C
  std::shared_ptr<nn::LayerNorm> final_layer_norm;
  std::shared_ptr<nn::Dropout> dropout;
};

class OPTDecoder : public nn::Module {
 public:
  explicit OPTDecoder(const ModelConfig& c);

  std::shared_ptr<nn::Embedding> embed_tokens;     // (V, E)
  std::shared_ptr<nn::Embedding> embed_positions;  // (P + 2, C)
  std::shared_ptr<nn::Linear> project_out;         // C -> E, or null
  std::shared_ptr<nn::Linear> project_in;          // E -> C, or null
  std::shared_ptr<nn::LayerNorm> final_layer_norm;  // pre-LN only, else null
  std::shared_ptr<ModuleList<OPTDecoderLayer>> layers;
  std::shared_ptr<nn::Dropout> dropout;
};

// HF's OPTModel: just the "decoder".
class OPTModel : public nn::Module {
 public:
  explicit OPTModel(const ModelConfig& c) { decoder = add_module("decoder", std::make_shared<OPTDecoder>(c)); }
  std::shared_ptr<OPTDecoder> decoder;
};

class OPT : public CausalLM {
 public:
  // HF's learned positions are stored 2 rows down (a fairseq leftover).
  static constexpr int kPositionOffset = 2;

  explicit OPT(const ModelConfig& config, uint64_t seed = 0);

  Variable hidden_states(const Tensor& ids, const ForwardOptions& opt = {}) override;
  Variable embed_tokens(const Tensor& ids) const override;
  const Variable& token_embedding_weight() const override { return decoder().embed_tokens->weight; }
  std::string token_embedding_name() const override { return "model.decoder.embed_tokens.weight"; }

  // Weights and embeddings N(0, init_std), the padding row 0, biases 0,
  // LayerNorm 1 and 0 (HF's OPTPreTrainedModel._init_weights).
  void init_weights(uint64_t seed) override;

  std::shared_ptr<OPTModel> model;

 private:
  OPTDecoder& decoder() const { return *model->decoder; }

 protected:
  Variable block_forward(int layer, const Variable& x, const ForwardOptions& opt) override;
};

}  // namespace mp::models
