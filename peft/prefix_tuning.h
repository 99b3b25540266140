// Prefix tuning (Li & Liang 2021), as HF PEFT's PrefixEncoder: every
// attention layer gets num_virtual_tokens extra keys and values in front of
// the sequence's own, trained while the model stays frozen. All of them come
// from one table of P rows:
//
//   table (P, L*2*C)                                    plain
//   table = MLP(embedding (P, C))                       prefix_projection:
//         = Linear(C -> hidden) -> tanh -> Linear(hidden -> L*2*C)
//
// Row p, column ((l*2 + kv)*H + h)*D + d is layer l's key (kv = 0) or value
// (kv = 1) of head h at prefix position p: HF's view (B, P, L*2, H, D),
// permute (L*2, B, H, P, D), split in pairs. The model sees each layer's
// pair as past_key_values: queries attend to all P prefix keys, the real
// tokens' positions start at P, the attention mask gains P ones in front.
//
// Parameter names, as PEFT's: "embedding.weight", and with the projection
// "transform.0.weight", "transform.0.bias", "transform.2.weight", "transform.2.bias".
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "models/causal_lm.h"
#include "nn/linear.h"
#include "peft/config.h"
#include "peft/modules.h"

namespace mp::peft {

class PrefixEncoder : public nn::Module {
 public:
  // with_projection: build the MLP (PEFT does so when prefix_projection and
  // not inference_mode). Parameters under Tag::adapter.
  PrefixEncoder(const PrefixTuningConfig& config, const models::ModelConfig& model, bool with_projection,
                uint64_t seed);

  // The table (P, L*2*C): the embedding itself, or the MLP's output.
  Variable table() const;
  // Per layer, key and value (B, H, P, D) for a batch of B.
  std::vector<models::KeyValue> forward(int64_t batch) const;

  bool has_projection() const { return mlp_in_ != nullptr; }
  // The plain table's parameter (P, L*2*C), or the MLP's input embedding (P, C).
  const Variable& embedding_weight() const { return embedding_->weight; }

 private:
  int num_layers_, num_heads_, head_dim_;
  std::shared_ptr<WeightModule> embedding_;
  std::shared_ptr<nn::Linear> mlp_in_, mlp_out_;  // transform.0 and transform.2
};

}  // namespace mp::peft
