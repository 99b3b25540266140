// CausalLM: what GPT-2 and OPT have in common, as PEFT, generation and the
// CLI see them. A causal language model maps token ids (B, T) to next-token
// logits (B, T, V):
//
//   ids (B, T) -> token embeddings (B, T, E) -> transformer -> hidden (B, T, E) -> lm_head -> logits (B, T, V)
//
// E is the embedding width (GPT-2: n_embd; OPT: word_embed_proj_dim). The
// lm_head is tied to the token embedding table (V, E), as in both HF models.
//
// ForwardOptions carries the optional inputs every forward understands:
//
//   attention_mask  (B, S) i32, 1 = a real token, 0 = padding. S counts every
//                   key a query can see: prefix P + cached tokens + T.
//   position_ids    (B, T) i32; by default HF's rule for the architecture
//                   (GPT-2: past .. past+T-1; OPT: from the attention mask).
//   prefix          per layer, extra keys and values (B, H, P, D) put before
//                   the sequence's own (PEFT prefix tuning). They act exactly
//                   as HF's past_key_values: the tokens' positions start at P.
//   inputs_embeds   (B, T', E) used instead of embedding ids (PEFT prompt
//                   tuning prepends virtual tokens this way); positions then
//                   run over T'. ids are ignored (pass an empty Tensor).
//   segment_ids     (B, T) i32, packed rows: several examples side by side in
//                   a row, each with its own segment id. A token attends only
//                   to earlier tokens of its own segment (and to a prefix);
//                   pass position_ids that restart at each example too.
//   cache           a KVCache for generation: keys and values of earlier
//                   calls are kept, each call appends its own. A prefix is
//                   stored by the first call and not passed again.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"
#include "engine/backend.h"
#include "models/config.h"
#include "nn/containers.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/rng.h"

namespace mp::models {

using ag::Variable;

// One layer's extra attention keys and values, each (B, H, P, D).
struct KeyValue {
  Variable key;
  Variable value;
};

// Keys and values of the tokens seen so far, per layer, for generation. Holds
// plain tensors (no graph): use it under ag::NoGrad.
class KVCache {
 public:
  explicit KVCache(int num_layers) : keys_(size_t(num_layers)), values_(size_t(num_layers)) {}
  // Keys held by `layer` (prefix + tokens of earlier calls); 0 when empty.
  // Layers append in turn during a forward, so ask layer 0 before it starts.
  int64_t length(int layer = 0) const { return keys_[size_t(layer)].defined() ? keys_[size_t(layer)].size(2) : 0; }
  int num_layers() const { return int(keys_.size()); }
  // Append one call's k, v (B, H, T, D) to `layer`; returns all of that
  // layer's keys and values so far, (B, H, length + T, D) each.
  std::pair<Tensor, Tensor> append(int layer, const Tensor& k, const Tensor& v);
  // All of a layer's keys / values so far (B, H, S, D); undefined when empty.
  const Tensor& keys(int layer) const { return keys_[size_t(layer)]; }
  const Tensor& values(int layer) const { return values_[size_t(layer)]; }
  void clear();

 private:
  std::vector<Tensor> keys_, values_;  // per layer (B, H, S, D)
};

struct ForwardOptions {
  const Tensor* attention_mask = nullptr;       // (B, S) i32
  const Tensor* position_ids = nullptr;         // (B, T) i32
  const Tensor* segment_ids = nullptr;          // (B, T) i32
  const std::vector<KeyValue>* prefix = nullptr;  // one per layer
  Variable inputs_embeds;                       // (B, T', E)
  KVCache* cache = nullptr;
};

class CausalLM : public nn::Module {
 public:
  explicit CausalLM(ModelConfig config) : config_(std::move(config)) {}

  const ModelConfig& config() const { return config_; }
  int num_layers() const { return config_.num_layers; }
  int num_heads() const { return config_.num_heads; }
  int head_dim() const { return config_.head_dim(); }
  int hidden_size() const { return config_.hidden_size; }
  int embed_dim() const { return config_.embed_dim(); }
  int vocab_size() const { return config_.vocab_size; }
  int max_positions() const { return config_.max_positions; }

  // ids (B, T) i32 -> the last hidden states (B, T, E), before the lm_head.
  virtual Variable hidden_states(const Tensor& ids, const ForwardOptions& opt = {}) = 0;
  // ids (B, T) i32 -> token embeddings (B, T, E): what inputs_embeds replaces.
  virtual Variable embed_tokens(const Tensor& ids) const = 0;
  // The token embedding table (V, E), a parameter (the tied lm_head weight).
  virtual const Variable& token_embedding_weight() const = 0;
  // The lm_head weight (V, E): the token table when tied.
  const Variable& lm_head_weight() const { return lm_head ? lm_head->weight : token_embedding_weight(); }
  // Give a tied model its own lm_head (V, E), holding the token table's
  // values (the same storage, no copy), and set tie_word_embeddings false:
  // what PEFT's modules_to_save does to a tied head or embedding, which then
  // trains a copy of one while the other keeps the original. Nothing to do
  // when the model is untied.
  void untie_lm_head();
  std::shared_ptr<nn::Linear> lm_head;  // only when tie_word_embeddings is false: (V, E)
  // The HF name of the token table ("transformer.wte.weight", ...).
  virtual std::string token_embedding_name() const = 0;

  // Fill every parameter as HF's _init_weights does, from `seed` alone.
  virtual void init_weights(uint64_t seed) = 0;

  // Checkpoint names. canonical_name maps a name found in a checkpoint to
  // this model's parameter name (e.g. GPT-2 hub files lack "transformer.");
  // ignorable_checkpoint_key says whether a name may be present and unused
  // (HF's causal-mask buffers, a tied lm_head.weight).
  virtual std::string canonical_name(const std::string& checkpoint_name) const { return checkpoint_name; }
  virtual bool ignorable_checkpoint_key(const std::string& name) const;

  // ids (B, T) -> logits (B, T, V).
  Variable forward(const Tensor& ids, const ForwardOptions& opt = {});
  // hidden (B, T, E) -> logits (B, T, V).
  Variable logits(const Variable& hidden) const;

  // Activation recompute, as HF's gradient_checkpointing_enable(): in
  // training mode with grad mode on, each block runs through nn::recompute,
  // which keeps only the block's inputs and makes its activations again
  // during backward. Losses and gradients are the same, bit for bit (dropout
  // masks are replayed); eval and generation are unaffected.
  void gradient_checkpointing_enable(bool on = true) { recompute_ = on; }
  bool gradient_checkpointing() const { return recompute_; }

  // HF's causal-LM loss (GPT2LMHeadModel / OPTForCausalLM with labels=): the
  // mean cross-entropy of logits[:, :-1] against labels[:, 1:], ignoring
  // -100. labels (B, T) i32 (with inputs_embeds: (B, T')).
  Variable loss(const Tensor& ids, const Tensor& labels, const ForwardOptions& opt = {});
  // The same from hidden states (B, T, E). With a frozen lm_head (PEFT,
  // eval) by ag::linear_cross_entropy: the logits (B*T, V) are made a chunk
  // of rows at a time and never held whole, nor is their gradient. With a
  // trained one (full fine-tuning), the faster unfused head keeps them.
  Variable loss_from_hidden(const Variable& hidden, const Tensor& labels) const;

 protected:
  // Tokens before this call: the cache's length, else the prefix length.
  int64_t past_length(const ForwardOptions& opt) const;
  // The position of each of T tokens (B, T) i32 by HF's rule, plus `offset`
  // (OPT's table starts 2 rows down): the rows to look up. `opt.position_ids`
  // if given (checked on the host); else with from_mask (OPT) and a mask,
  // cumsum(mask)*mask - 1 cut to the last T, made on the mask's device; else
  // past .. past+T-1, made on the model's device. Checked against
  // max_positions (a mask by its length S).
  Tensor position_ids(int64_t B, int64_t T, const ForwardOptions& opt, bool from_mask, int32_t offset = 0) const;
  // Check ids / inputs_embeds / mask / prefix shapes; returns (B, T).
  std::pair<int64_t, int64_t> check_inputs(const Tensor& ids, const ForwardOptions& opt) const;

  // One block (transformer layer): x (B, T, C) -> (B, T, C).
  virtual Variable block_forward(int layer, const Variable& x, const ForwardOptions& opt) = 0;
  // x (B, T, C) through every block in turn: each one recomputed in backward when
  // recompute is on, in training, with grad mode on and no cache.
  Variable run_blocks(Variable x, const ForwardOptions& opt);

  // Multi-head causal self-attention shared by both models. q, k, v (B, T, C)
  // (already projected) -> (B, T, C), with `scale` on q k^T, the prefix and
  // the cache of `layer` and the attention mask from opt.
  // In training mode it applies attention dropout (config attn_pdrop) inside
  // the fused kernel, as HF applies attn_dropout to the probabilities.
  Variable self_attention(const Variable& q, const Variable& k, const Variable& v, int layer, float scale,
                          const ForwardOptions& opt) const;
  // The same from q, k and v side by side in qkv (B, T, 3C), as one fused
  // projection makes them (GPT-2's c_attn): without a prefix or a cache they
  // go to the kernel stacked, so their gradients come back in one pass.
  Variable self_attention(const Variable& qkv, int layer, float scale, const ForwardOptions& opt) const;

  ModelConfig config_;

 private:
  // The kernel's parameters: scale, causal, opt's masks, and in training
  // attention dropout over the queries x keys probabilities.
  AttentionParams attention_params(int64_t queries, int64_t keys, float scale, const ForwardOptions& opt) const;
  // y (B, H, T, D) -> (B, T, H D).
  Variable merge_heads(const Variable& y) const;
  // block_forward(layer) through nn::recompute.
  Variable recomputed_block(int layer, const Variable& x, const ForwardOptions& opt);

  bool recompute_ = false;
  uint64_t attn_dropout_instance_ = nn::next_dropout_instance();  // seeds the attention dropout masks
};

// HF's label shift: targets[b, t] = labels[b, t + 1], and -100 for the last
// position. labels (B, T) i32 -> (B, T) i32.
Tensor shift_labels(const Tensor& labels);

// How init_weights fills one parameter: N(0, std) from a seed derived from
// (seed, name), so a parameter's initial values do not depend on the order of
// construction.
enum class Init : uint8_t { normal, zeros, ones };
void init_parameter(const Variable& p, Init kind, double std, uint64_t seed, const std::string& name);

using nn::ModuleList;  // nn/containers.h

}  // namespace mp::models
