// Text generation: extend a prompt one token at a time.
//
// With the KV cache (the default) the prompt runs through the model once and
// each later step feeds only the newest token, whose query attends to the
// cached keys and values of everything before it: O(T) work per token. The
// no-cache path recomputes the whole sequence every step (O(T^2) per token);
// it exists to check the cache (both must pick the same tokens).
//
// Picking the next token from the last position's logits (V):
//   greedy (do_sample = false)   argmax (the first one on ties, as torch)
//   sampling                     logits / temperature, keep the top_k, keep the
//                                smallest set of most likely tokens whose
//                                probability sums to >= top_p, renormalise,
//                                draw with a std::mt19937_64 seeded by `seed`
//                                (the same seed gives the same tokens).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "models/causal_lm.h"

namespace mp::models {

struct GenerateOptions {
  int max_new_tokens = 20;
  bool do_sample = false;    // false: greedy
  float temperature = 1.0f;  // > 0; sampling only
  int top_k = 0;             // 0: no top-k filter
  float top_p = 1.0f;        // 1: no nucleus filter
  uint64_t seed = 0;
  int eos_token_id = -1;     // stop after generating it; -1: never stop early
  bool use_cache = true;
};

// What a PEFT prompt method puts in front of the prompt, for batch 1: soft
// prompt embeddings (1, P, E) (prompt tuning) or per-layer keys and values
// (1, H, P, D) (prefix tuning). Empty for a plain model or LoRA.
struct Prefill {
  Variable virtual_embeds;
  std::vector<KeyValue> prefix;
  int64_t length() const {
    return virtual_embeds.defined() ? virtual_embeds.size(1) : prefix.empty() ? 0 : prefix[0].key.size(2);
  }
};

// prompt ids -> prompt followed by the new ids (at most max_new_tokens; fewer
// when eos_token_id was generated, which is included). Runs without
// gradients in eval mode (the model's mode is restored afterwards).
// mp::Error for an empty prompt, bad options, or when prompt + max_new_tokens
// exceeds the model's positions (n_positions / max_position_embeddings).
std::vector<int32_t> generate(CausalLM& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                              const Prefill& prefill = {});

// The choice made from one position's logits (V), exposed for tests.
// `uniform` is a draw in [0, 1) used when sampling.
int32_t pick_token(std::span<const float> logits, const GenerateOptions& options, double uniform);

}  // namespace mp::models
