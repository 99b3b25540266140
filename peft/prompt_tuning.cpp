#include "peft/prompt_tuning.h"

#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "nn/init.h"

namespace mp::peft {

std::vector<int32_t> repeat_to_length(const std::vector<int32_t>& ids, int n) {
  if (ids.empty()) fail("prompt_tuning_init_text encodes to no tokens");
  std::vector<int32_t> out;
  out.reserve(size_t(n));
  for (int i = 0; i < n; ++i) out.push_back(ids[size_t(i) % ids.size()]);
  return out;
}

// The first n rows of the table at `ids`, as a fresh tensor under the current tag.
static Tensor rows_of(const Tensor& table, const std::vector<int32_t>& ids) {
  const int64_t n = int64_t(ids.size());
  Tensor index = Tensor::from_vector(ids, {n}, Tag::workspace).to(table.device());  // (n)
  return ops::embedding(index, table.to(DType::f32));            // (n, E)
}

PromptEmbedding::PromptEmbedding(const PromptTuningConfig& c, const models::CausalLM& model,
                                 const models::Tokenizer* tokenizer, uint64_t seed) {
  const int64_t P = c.num_virtual_tokens, E = model.embed_dim();
  if (P <= 0) fail("num_virtual_tokens must be > 0, got {}", P);
  TagScope scope(Tag::adapter);
  Tensor table;  // (P, E)
  if (c.prompt_tuning_init == PromptTuningInit::text) {
    if (!tokenizer) fail("prompt_tuning_init TEXT needs a tokenizer (tokenizer_name_or_path)");
    const bool bos = model.config().arch == models::Arch::opt;
    std::vector<int32_t> ids = bos ? tokenizer->encode_with_bos(c.prompt_tuning_init_text, model.config().bos_token_id)
                                   : tokenizer->encode(c.prompt_tuning_init_text);
    for (int32_t id : ids)
      if (id < 0 || id >= model.vocab_size())
        fail("prompt_tuning_init_text token id {} is outside the model's vocabulary of {}", id, model.vocab_size());
    table = rows_of(model.token_embedding_weight().value(), repeat_to_length(ids, int(P)));
  } else {
    table = Tensor::empty({P, E});
    nn::init::normal_(table, 0.0, 1.0, seed);
  }
  embedding_ = add_module("embedding", std::make_shared<WeightModule>(table));
}

Variable PromptEmbedding::forward(int64_t batch) const {
  const Variable& w = embedding_->weight;  // (P, E)
  const int64_t P = w.size(0), E = w.size(1);
  return ag::expand(ag::reshape(w, {1, P, E}), {batch, P, E});  // (B, P, E)
}

}  // namespace mp::peft
