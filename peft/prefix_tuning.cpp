#include "peft/prefix_tuning.h"

#include "autograd/ops.h"
#include "engine/error.h"
#include "nn/init.h"

namespace mp::peft {

// Move a freshly built layer's parameters to the adapter's account.
static void retag_as_adapter(const nn::Module& m) {
  for (const auto& [name, p] : m.named_parameters()) p.value().storage()->retag(Tag::adapter);
}

PrefixEncoder::PrefixEncoder(const PrefixTuningConfig& c, const models::ModelConfig& model, bool with_projection,
                             uint64_t seed)
    : num_layers_(model.num_layers), num_heads_(model.num_heads), head_dim_(model.head_dim()) {
  const int64_t P = c.num_virtual_tokens, C = model.hidden_size, width = int64_t(num_layers_) * 2 * C;
  if (P <= 0) fail("num_virtual_tokens must be > 0, got {}", P);
  TagScope scope(Tag::adapter);
  Tensor table = Tensor::empty({P, with_projection ? C : width});  // (P, C) or (P, L*2*C)
  nn::init::normal_(table, 0.0, 1.0, seed);                          // torch.nn.Embedding's default
  embedding_ = add_module("embedding", std::make_shared<WeightModule>(table));
  if (with_projection) {
    if (c.encoder_hidden_size <= 0) fail("prefix_projection needs encoder_hidden_size > 0");
    auto transform = add_module("transform", std::make_shared<ModuleDict>());
    mlp_in_ = transform->insert("0", std::make_shared<nn::Linear>(C, c.encoder_hidden_size, true, nn::Layout::torch,
                                                                   nn::mix_seed(seed, 1, 0)));
    mlp_out_ = transform->insert("2", std::make_shared<nn::Linear>(c.encoder_hidden_size, width, true,
                                                                    nn::Layout::torch, nn::mix_seed(seed, 2, 0)));
    retag_as_adapter(*transform);
  }
}

Variable PrefixEncoder::table() const {
  if (!has_projection()) return embedding_->weight;            // (P, L*2*C)
  Variable h = ag::tanh(mlp_in_->forward(embedding_->weight));  // (P, hidden)
  return mlp_out_->forward(h);                                  // (P, L*2*C)
}

std::vector<models::KeyValue> PrefixEncoder::forward(int64_t batch) const {
  const int64_t L = num_layers_, H = num_heads_, D = head_dim_;
  Variable t = table();
  const int64_t P = t.size(0);
  // (P, L*2*C) -> (P, L*2, H, D) -> (L*2, H, P, D)
  Variable kv = ag::permute(ag::reshape(t, {P, L * 2, H, D}), {1, 2, 0, 3});
  std::vector<models::KeyValue> out;
  out.reserve(size_t(L));
  auto part = [&](int64_t i) {  // (L*2, H, P, D) -> row i, for every batch entry: (B, H, P, D)
    return ag::expand(ag::narrow(kv, 0, i, 1), {batch, H, P, D});
  };
  for (int64_t l = 0; l < L; ++l) out.push_back({part(2 * l), part(2 * l + 1)});
  return out;
}

}  // namespace mp::peft
