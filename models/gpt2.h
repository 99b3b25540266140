// GPT-2 (Radford et al. 2019) as Hugging Face's GPT2LMHeadModel, with its
// parameter names, so an HF model.safetensors loads by name:
//
//   transformer.wte.weight                 (V, C)   token embeddings (tied lm_head)
//   transformer.wpe.weight                 (P, C)   learned positions
//   transformer.h.{i}.ln_1.{weight,bias}   (C)
//   transformer.h.{i}.attn.c_attn.weight   (C, 3C)  Conv1D layout (in, out): q, k, v side by side
//   transformer.h.{i}.attn.c_proj.weight   (C, C)
//   transformer.h.{i}.ln_2.{weight,bias}   (C)
//   transformer.h.{i}.mlp.c_fc.weight      (C, 4C)
//   transformer.h.{i}.mlp.c_proj.weight    (4C, C)
//   transformer.ln_f.{weight,bias}         (C)
//
// One block, pre-LN:
//
//   x = x + attn(ln_1(x))      attention: causal, H heads of D = C / H, scale 1/sqrt(D)
//   x = x + mlp(ln_2(x))       mlp: c_proj(gelu_tanh(c_fc(x)))
//
// In training mode, dropout as HF's: embedding (embd_pdrop), residual
// (resid_pdrop) and attention probabilities (attn_pdrop, inside the fused
// kernel; see CausalLM::self_attention).
#pragma once
#include <memory>

#include "models/causal_lm.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"

namespace mp::models {

// The attention's layers; GPT2::block_forward runs them (the heads themselves
// are CausalLM::self_attention, shared with OPT).
class GPT2Attention : public nn::Module {
 public:
  explicit GPT2Attention(const ModelConfig& c);

  std::shared_ptr<nn::Linear> c_attn;  // (C, 3C)
  std::shared_ptr<nn::Linear> c_proj;  // (C, C)
  std::shared_ptr<nn::Dropout> resid_dropout;
};

class GPT2MLP : public nn::Module {
 public:
  explicit GPT2MLP(const ModelConfig& c);
  Variable forward(const Variable& x);  // (B, T, C) -> (B, T, C)

  std::shared_ptr<nn::Linear> c_fc;    // (C, 4C)
  std::shared_ptr<nn::Linear> c_proj;  // (4C, C)
  std::shared_ptr<nn::Dropout> dropout;
};

class GPT2Block : public nn::Module {
 public:
  explicit GPT2Block(const ModelConfig& c);

  std::shared_ptr<nn::LayerNorm> ln_1;
  std::shared_ptr<GPT2Attention> attn;
  std::shared_ptr<nn::LayerNorm> ln_2;
  std::shared_ptr<GPT2MLP> mlp;
};

// HF's GPT2Model: the part named "transformer".
class GPT2Transformer : public nn::Module {
 public:
  explicit GPT2Transformer(const ModelConfig& c);

  std::shared_ptr<nn::Embedding> wte;  // (V, C)
  std::shared_ptr<nn::Embedding> wpe;  // (P, C)
  std::shared_ptr<nn::Dropout> drop;
  std::shared_ptr<ModuleList<GPT2Block>> h;
  std::shared_ptr<nn::LayerNorm> ln_f;
};

class GPT2 : public CausalLM {
 public:
  // Random weights as HF initialises them (see init_weights), from `seed`.
  explicit GPT2(const ModelConfig& config, uint64_t seed = 0);

  Variable hidden_states(const Tensor& ids, const ForwardOptions& opt = {}) override;
  Variable embed_tokens(const Tensor& ids) const override;
  const Variable& token_embedding_weight() const override { return transformer->wte->weight; }
  std::string token_embedding_name() const override { return "transformer.wte.weight"; }

  // Weights and embeddings N(0, initializer_range); the c_proj weights
  // N(0, initializer_range / sqrt(2 * n_layer)); biases 0; LayerNorm 1 and 0.
  void init_weights(uint64_t seed) override;

  // Hub checkpoints of the original GPT-2 lack the "transformer." prefix.
  std::string canonical_name(const std::string& checkpoint_name) const override;
  // ... and keep the causal-mask buffers attn.bias / attn.masked_bias.
  bool ignorable_checkpoint_key(const std::string& name) const override;

  std::shared_ptr<GPT2Transformer> transformer;

 protected:
  Variable block_forward(int layer, const Variable& x, const ForwardOptions& opt) override;
};

}  // namespace mp::models
