// Mixed batches: one forward (or greedy generation) over rows that each name
// their own adapter, as HF PEFT's adapter_names=. LoRA rows: every LoRA
// layer adds each row's own update (peft/lora.h, set_row_adapters); prompt
// rows: each row gets its own soft prompt or prefix (PeftModel::prepare).
#include <algorithm>

#include "autograd/ops.h"
#include "engine/error.h"
#include "models/generate.h"
#include "peft/peft_model.h"

namespace mp::peft {

void PeftModel::set_lora_rows(const std::vector<std::string>& adapter_names) {
  if (!ia3_layers_.empty() && !adapter_names.empty())
    fail("mixed batch: IA3 adapters run one adapter per batch (mixed batches are for LoRA and prompt adapters)");
  std::vector<std::string> rows;
  for (const std::string& n : adapter_names) {
    if (n != kBaseName && !configs_.count(n)) fail("mixed batch: no adapter '{}'", n);
    if (saved_.saves(n))
      fail("mixed batch: adapter '{}' has modules_to_save, which run one adapter per batch (its rows need a batch "
           "of their own)",
           n);
    rows.push_back(n == kBaseName ? "" : n);
  }
  saved_.show(adapter_names.empty() && enabled_ ? active_ : "");  // the other rows: the modules' original values
  for (auto& [path, linear] : lora_layers_) {
    LoraLinear& l = lora_of(*linear);
    std::vector<std::string> here = rows;
    for (std::string& n : here)
      if (!l.has_adapter(n)) n.clear();  // an adapter that does not target this layer leaves it alone
    l.set_row_adapters(std::move(here));
  }
}

Variable PeftModel::forward(const Tensor& ids, const Tensor* attention_mask,
                            const std::vector<std::string>& adapter_names) {
  if (ids.dim() != 2 || int64_t(adapter_names.size()) != ids.size(0))
    fail("mixed batch: {} adapter names for input ids {}", adapter_names.size(), shape_str(ids.shape()));
  if (is_prompt_family()) {
    models::ForwardOptions options;
    options.attention_mask = attention_mask;
    return prepared_forward(ids, options, &adapter_names);
  }
  set_lora_rows(adapter_names);
  struct Restore {  // the layers run the active adapter again, whatever happens
    PeftModel* m;
    ~Restore() { m->set_lora_rows({}); }
  } restore{this};
  return forward(ids, attention_mask);
}

namespace {

// Greedy choice from row b's logits at position `at` of all (B, rows, V).
int32_t greedy_at(const std::vector<float>& all, int64_t b, int64_t rows, int64_t at, int64_t V) {
  return models::pick_token(std::span(all).subspan(size_t((b * rows + at) * V), size_t(V)), models::GenerateOptions{}, 0.0);
}

bool all_done(const std::vector<bool>& done) { return std::all_of(done.begin(), done.end(), [](bool d) { return d; }); }

}  // namespace

// LoRA rows: the adapters live in the base model's layers, so the base model
// generates with a KV cache. Prompts are left-padded (pads masked, positions
// from 0 at each prompt's first token); each step feeds every row's newest token.
std::vector<std::vector<int32_t>> PeftModel::cached_generate(const std::vector<std::vector<int32_t>>& prompts,
                                                             int max_new_tokens, int eos_token_id) {
  const int64_t B = int64_t(prompts.size());
  int64_t T = 0;
  for (const auto& p : prompts) T = std::max(T, int64_t(p.size()));
  std::vector<int32_t> ids(size_t(B * T), 0), mask(size_t(B * T), 0), positions(size_t(B * T), 0);  // (B, T)
  std::vector<int32_t> next_position(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<int32_t>& p = prompts[size_t(b)];
    const int64_t pad = T - int64_t(p.size());
    for (int64_t t = 0; t < int64_t(p.size()); ++t) {
      ids[size_t(b * T + pad + t)] = p[size_t(t)];
      mask[size_t(b * T + pad + t)] = 1;
      positions[size_t(b * T + pad + t)] = int32_t(t);
    }
    next_position[size_t(b)] = int32_t(p.size());
  }
  const Device device = model_->token_embedding_weight().value().device();
  auto on_device = [&](const std::vector<int32_t>& v, int64_t cols) {
    return Tensor::from_vector(v, {B, cols}, Tag::workspace).to(device);
  };
  models::KVCache cache(model_->num_layers());
  std::vector<std::vector<int32_t>> seqs = prompts;
  std::vector<bool> done(size_t(B), false);
  Tensor input = on_device(ids, T), position_ids = on_device(positions, T);  // (B, T), then (B, 1)
  for (int step = 0; step < max_new_tokens; ++step) {
    const int64_t S = int64_t(mask.size()) / B;  // keys so far
    const Tensor mask_tensor = on_device(mask, S);
    models::ForwardOptions opt;
    opt.cache = &cache;
    opt.attention_mask = &mask_tensor;
    opt.position_ids = &position_ids;
    Variable logits = model_->forward(input, opt);  // (B, T or 1, V)
    const std::vector<float> all = logits.value().to_floats();
    std::vector<int32_t> newest(static_cast<size_t>(B)), newest_position(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      const int32_t next = greedy_at(all, b, logits.size(1), logits.size(1) - 1, logits.size(2));
      if (!done[size_t(b)]) seqs[size_t(b)].push_back(next);
      done[size_t(b)] = done[size_t(b)] || next == eos_token_id;
      newest[size_t(b)] = next;  // a finished row goes on in step with the others, unread
      newest_position[size_t(b)] = next_position[size_t(b)]++;
    }
    if (all_done(done)) break;
    std::vector<int32_t> grown;  // (B, S + 1): every row's new token is real
    for (int64_t b = 0; b < B; ++b) {
      grown.insert(grown.end(), mask.begin() + b * S, mask.begin() + (b + 1) * S);
      grown.push_back(1);
    }
    mask = std::move(grown);
    input = on_device(newest, 1);
    position_ids = on_device(newest_position, 1);
  }
  return seqs;
}

std::vector<std::vector<int32_t>> PeftModel::generate(const std::vector<std::vector<int32_t>>& prompts,
                                                      const std::vector<std::string>& adapter_names,
                                                      int max_new_tokens, int eos_token_id) {
  const int64_t B = int64_t(prompts.size());
  if (B == 0 || int64_t(adapter_names.size()) != B)
    fail("mixed generation: {} prompts and {} adapter names", B, adapter_names.size());
  if (max_new_tokens <= 0) fail("max_new_tokens must be positive, got {}", max_new_tokens);
  for (const auto& p : prompts)
    if (p.empty()) fail("mixed generation: an empty prompt");
  ag::NoGrad no_grad;
  const bool was_training = is_training();
  eval();
  struct Restore {  // training mode, and the LoRA layers running the active adapter again
    PeftModel* m;
    bool training;
    ~Restore() {
      m->set_lora_rows({});
      m->train(training);
    }
  } restore{this, was_training};
  if (!is_prompt_family()) {
    set_lora_rows(adapter_names);
    return cached_generate(prompts, max_new_tokens, eos_token_id);
  }
  // Prompt and prefix rows: the whole right-padded batch again at each step
  // (a row's pads come after its tokens, which never see them).
  std::vector<std::vector<int32_t>> seqs = prompts;
  std::vector<bool> done(size_t(B), false);
  const Device device = model_->token_embedding_weight().value().device();
  for (int step = 0; step < max_new_tokens; ++step) {
    int64_t T = 0;
    for (const auto& s : seqs) T = std::max(T, int64_t(s.size()));
    std::vector<int32_t> ids(size_t(B * T), 0), mask(size_t(B * T), 0);  // (B, T) right-padded
    for (int64_t b = 0; b < B; ++b)
      for (size_t t = 0; t < seqs[size_t(b)].size(); ++t) {
        ids[size_t(b * T) + t] = seqs[size_t(b)][t];
        mask[size_t(b * T) + t] = 1;
      }
    const Tensor id_tensor = Tensor::from_vector(ids, {B, T}, Tag::workspace).to(device);
    const Tensor mask_tensor = Tensor::from_vector(mask, {B, T}, Tag::workspace).to(device);
    Variable logits = forward(id_tensor, &mask_tensor, adapter_names);  // (B, P+T, V)
    const int64_t front = logits.size(1) - T;                           // the virtual positions
    const std::vector<float> all = logits.value().to_floats();
    for (int64_t b = 0; b < B; ++b) {
      if (done[size_t(b)]) continue;
      seqs[size_t(b)].push_back(greedy_at(all, b, logits.size(1), front + int64_t(seqs[size_t(b)].size()) - 1, logits.size(2)));
      done[size_t(b)] = seqs[size_t(b)].back() == eos_token_id;
    }
    if (all_done(done)) break;
  }
  return seqs;
}

}  // namespace mp::peft
