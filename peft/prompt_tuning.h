// Prompt tuning (Lester et al. 2021), as HF PEFT's PromptEmbedding: a table
// of num_virtual_tokens trainable embeddings, the "soft prompt", put in front
// of the token embeddings of every sequence. The model itself stays frozen:
//
//   inputs_embeds = cat(prompt (B, P, E), word_embeddings(ids) (B, T, E))  -> (B, P+T, E)
//
// Initialisation (PEFT's PromptTuningInit):
//   RANDOM  N(0, 1), torch.nn.Embedding's default
//   TEXT    the word embeddings of a text's tokens, the ids repeated until
//           there are enough and cut to num_virtual_tokens
//
// Parameter name, as PEFT's: "embedding.weight" (P, E) under the adapter's
// prompt_encoder entry.
#pragma once
#include <cstdint>
#include <memory>

#include "models/causal_lm.h"
#include "models/tokenizer.h"
#include "peft/config.h"
#include "peft/modules.h"

namespace mp::peft {

class PromptEmbedding : public nn::Module {
 public:
  // A (num_virtual_tokens, E) table under Tag::adapter. TEXT init reads rows
  // of model's token embedding table; `tokenizer` encodes the text (OPT's
  // ids start with its BOS token, as HF's tokenizer gives them).
  PromptEmbedding(const PromptTuningConfig& config, const models::CausalLM& model,
                  const models::Tokenizer* tokenizer, uint64_t seed);

  // The prompt for a batch of B sequences: (B, P, E), every row the same table.
  Variable forward(int64_t batch) const;
  const Variable& weight() const { return embedding_->weight; }

 private:
  std::shared_ptr<WeightModule> embedding_;
};

// The token ids PEFT's TEXT init uses: `ids` repeated ceil(n / len) times and cut to n.
std::vector<int32_t> repeat_to_length(const std::vector<int32_t>& ids, int n);

}  // namespace mp::peft
