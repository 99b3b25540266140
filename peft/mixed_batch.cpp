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

void PeftModel::set_lora_rows(const std::vector<std::string>& rows) {
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
  std::vector<std::string> rows;
  for (const std::string& n : adapter_names) {
    if (n != kBaseName && !configs_.count(n)) fail("mixed batch: no adapter '{}'", n);
    rows.push_back(n == kBaseName ? "" : n);
  }
  set_lora_rows(rows);
  struct Restore {  // the layers run the active adapter again, whatever happens
    PeftModel* m;
    ~Restore() { m->set_lora_rows({}); }
  } restore{this};
  return forward(ids, attention_mask);
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
  models::GenerateOptions greedy;
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
    Variable logits = forward(id_tensor, &mask_tensor, adapter_names);  // (B, [P+]T, V)
    const int64_t front = logits.size(1) - T, V = logits.size(2);       // prompt tuning's virtual positions
    const std::vector<float> all = logits.value().to_floats();
    for (int64_t b = 0; b < B; ++b) {
      if (done[size_t(b)]) continue;
      const int64_t last = front + int64_t(seqs[size_t(b)].size()) - 1;  // the row's last real token
      const int32_t next = models::pick_token(std::span(all).subspan(size_t((b * logits.size(1) + last) * V), size_t(V)),
                                              greedy, 0.0);
      seqs[size_t(b)].push_back(next);
      done[size_t(b)] = next == eos_token_id;
    }
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
  }
  train(was_training);
  return seqs;
}

}  // namespace mp::peft
