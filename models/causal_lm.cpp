#include "models/causal_lm.h"

#include <cmath>

#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "nn/recompute.h"
#include "nn/init.h"
#include "nn/rng.h"

namespace mp::models {

namespace {

[[noreturn]] void fail_beyond(int64_t position, int64_t max_positions) {
  fail("position {} is beyond the model's {} positions (n_positions / max_position_embeddings): "
       "the sequence is too long",
       position, max_positions);
}

}  // namespace

// ---- KVCache ----

std::pair<Tensor, Tensor> KVCache::append(int layer, const Tensor& k, const Tensor& v) {
  Tensor& keys = keys_[size_t(layer)];      // (B, H, S, D)
  Tensor& values = values_[size_t(layer)];  // (B, H, S, D)
  if (!keys.defined()) {
    keys = k.contiguous();
    values = v.contiguous();
  } else {
    // Growing by concatenation copies S keys per step, the same order of work
    // as the attention over them that follows.
    keys = ops::cat({keys, k}, 2);
    values = ops::cat({values, v}, 2);
  }
  return {keys, values};
}

void KVCache::clear() {
  for (Tensor& t : keys_) t = Tensor();
  for (Tensor& t : values_) t = Tensor();
}

// ---- labels ----

Tensor shift_labels(const Tensor& labels) {
  if (labels.dim() != 2 || labels.dtype() != DType::i32)
    fail("labels must be (B, T) i32, not {} {}", shape_str(labels.shape()), dtype_name(labels.dtype()));
  const int64_t B = labels.size(0), T = labels.size(1);
  // On the labels' device (no host round trip): labels[:, 1:], then -100
  // where the last position has nothing to predict.
  Tensor nothing = Tensor::full({B, 1}, -100, DType::i32, labels.device());  // (B, 1)
  if (T == 1) return nothing;
  return ops::cat({labels.narrow(1, 1, T - 1), nothing}, 1);  // (B, T)
}

// ---- initialisation ----

void init_parameter(const Variable& p, Init kind, double std, uint64_t seed, const std::string& name) {
  switch (kind) {
    case Init::zeros: nn::init::zeros_(p.value()); break;
    case Init::ones: nn::init::ones_(p.value()); break;
    case Init::normal: {
      // FNV-1a of the name: each parameter's values depend on (seed, name) only.
      uint64_t h = 1469598103934665603ull;
      for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
      nn::init::normal_(p.value(), 0.0, std, nn::mix_seed(seed, h, 0));
      break;
    }
  }
}

// ---- CausalLM ----

bool CausalLM::ignorable_checkpoint_key(const std::string& name) const {
  // HF drops a tied lm_head.weight when saving, but older files keep it.
  return config_.tie_word_embeddings && name == "lm_head.weight";
}

void CausalLM::untie_lm_head() {
  if (lm_head) return;
  lm_head = add_module("lm_head", std::make_shared<nn::Linear>(token_embedding_weight().value()));  // (V, E)
  config_.tie_word_embeddings = false;
}

Variable CausalLM::forward(const Tensor& ids, const ForwardOptions& opt) {
  return logits(hidden_states(ids, opt));  // (B, T, V)
}

Variable CausalLM::logits(const Variable& hidden) const {
  // hidden (B, T, E) @ lm_head (V, E)^T -> (B, T, V)
  return ag::linear(hidden, lm_head_weight(), Variable());
}

Variable CausalLM::loss(const Tensor& ids, const Tensor& labels, const ForwardOptions& opt) {
  return loss_from_hidden(hidden_states(ids, opt), labels);
}

Variable CausalLM::loss_from_hidden(const Variable& hidden, const Tensor& labels) const {
  const int64_t B = hidden.size(0), T = hidden.size(1);
  if (labels.shape() != Shape{B, T})
    fail("labels {} do not match the model's output positions (B, T) = {}", shape_str(labels.shape()),
         shape_str({B, T}));
  // HF compares logits[:, :-1] with labels[:, 1:]. Shifting the labels instead
  // (and ignoring the last position) gives the same mean without copying the
  // logits.
  Tensor targets = shift_labels(labels).reshape({B * T});  // (B*T)
  // The fused head does the unfused one's GEMMs when its weight is frozen
  // (PEFT, eval), and is as fast; a trained head (full fine-tuning) would
  // need its logits twice, one more GEMM of the head's size (measured: the
  // head about 1.4x slower; see docs/benchmarks.md), so it keeps the unfused path.
  if (ag::needs_grad(lm_head_weight()))
    return ag::cross_entropy(ag::reshape(logits(hidden), {B * T, vocab_size()}), targets, -100);  // (B*T, V) logits
  return ag::linear_cross_entropy(ag::reshape(hidden, {B * T, embed_dim()}), lm_head_weight(), targets, -100);
}

Variable CausalLM::run_blocks(Variable x, const ForwardOptions& opt) {
  const bool recompute = recompute_ && is_training() && ag::grad_enabled() && !opt.cache;
  for (int layer = 0; layer < num_layers(); ++layer)
    x = recompute ? recomputed_block(layer, x, opt) : block_forward(layer, x, opt);  // (B, T, C)
  return x;
}

Variable CausalLM::recomputed_block(int layer, const Variable& x, const ForwardOptions& opt) {
  // Every non-leaf Variable the block reads comes in as an input (see
  // autograd/recompute.h): x, and this layer's prefix keys and values.
  std::vector<Variable> inputs{x};
  if (opt.prefix) {
    const KeyValue& kv = (*opt.prefix)[size_t(layer)];
    inputs.push_back(kv.key);    // (B, H, P, D)
    inputs.push_back(kv.value);  // (B, H, P, D)
  }
  // The replay runs in backward, when the caller's ForwardOptions are gone:
  // keep the mask itself (a Tensor shares its storage).
  Tensor mask = opt.attention_mask ? *opt.attention_mask : Tensor();  // (B, S)
  Tensor segments = opt.segment_ids ? *opt.segment_ids : Tensor();    // (B, T)
  auto block = [this, layer, mask, segments](const std::vector<Variable>& in) {
    ForwardOptions o;
    o.attention_mask = mask.defined() ? &mask : nullptr;
    o.segment_ids = segments.defined() ? &segments : nullptr;
    std::vector<KeyValue> prefix;  // a block reads only its own layer's entry
    if (in.size() == 3) {
      prefix.resize(size_t(num_layers()));
      prefix[size_t(layer)] = {in[1], in[2]};
      o.prefix = &prefix;
    }
    return block_forward(layer, in[0], o);
  };
  return nn::recompute(block, inputs);
}

int64_t CausalLM::past_length(const ForwardOptions& opt) const {
  if (opt.cache && opt.cache->length() > 0) return opt.cache->length();
  if (opt.prefix && !opt.prefix->empty()) return (*opt.prefix)[0].key.size(2);
  return 0;
}

std::pair<int64_t, int64_t> CausalLM::check_inputs(const Tensor& ids, const ForwardOptions& opt) const {
  int64_t B = 0, T = 0;
  if (opt.inputs_embeds.defined()) {
    const Shape& s = opt.inputs_embeds.shape();
    if (s.size() != 3 || s[2] != embed_dim())
      fail("inputs_embeds must be (B, T, {}), not {}", embed_dim(), shape_str(s));
    B = s[0];
    T = s[1];
  } else {
    if (!ids.defined()) fail("forward needs token ids or inputs_embeds");
    if (ids.dim() != 2 || ids.dtype() != DType::i32)
      fail("token ids must be (B, T) i32, not {} {}", shape_str(ids.shape()), dtype_name(ids.dtype()));
    B = ids.size(0);
    T = ids.size(1);
  }
  if (B == 0 || T == 0) fail("forward of an empty batch {}", shape_str({B, T}));

  int64_t keys = T + past_length(opt);  // every key a query can see
  if (opt.prefix) {
    if (opt.prefix->size() != size_t(num_layers()))
      fail("prefix has {} layers of keys/values, the model has {}", opt.prefix->size(), num_layers());
    const int64_t P = (*opt.prefix)[0].key.size(2);
    for (const KeyValue& kv : *opt.prefix) {
      Shape want{B, num_heads(), P, head_dim()};  // (B, H, P, D)
      if (!kv.key.defined() || !kv.value.defined() || kv.key.shape() != want || kv.value.shape() != want)
        fail("prefix keys/values must be {} (B, H, P, D) in every layer, got {} and {}", shape_str(want),
             kv.key.defined() ? shape_str(kv.key.shape()) : "none",
             kv.value.defined() ? shape_str(kv.value.shape()) : "none");
    }
  }
  if (opt.attention_mask) {
    const Tensor& m = *opt.attention_mask;
    if (m.dtype() != DType::i32 || m.shape() != Shape{B, keys})
      fail("attention_mask must be (B, S) = {} i32 (S = prefix + cached + new tokens), not {} {}",
           shape_str({B, keys}), shape_str(m.shape()), dtype_name(m.dtype()));
  }
  if (opt.position_ids && (opt.position_ids->dtype() != DType::i32 || opt.position_ids->shape() != Shape{B, T}))
    fail("position_ids must be (B, T) = {} i32, not {} {}", shape_str({B, T}),
         shape_str(opt.position_ids->shape()), dtype_name(opt.position_ids->dtype()));
  if (opt.segment_ids && (opt.segment_ids->dtype() != DType::i32 || opt.segment_ids->shape() != Shape{B, T}))
    fail("segment_ids must be (B, T) = {} i32, not {} {}", shape_str({B, T}), shape_str(opt.segment_ids->shape()),
         dtype_name(opt.segment_ids->dtype()));
  if (opt.segment_ids && opt.cache) fail("segment_ids (packed rows) cannot be used with a KV cache");
  return {B, T};
}

Tensor CausalLM::position_ids(int64_t B, int64_t T, const ForwardOptions& opt, bool from_mask,
                              int32_t offset) const {
  Device dev = token_embedding_weight().value().device();
  // Given ids (packed rows restart at each example) are checked on the host.
  // Meta ids have no values: they take the rules below (same shape, same bytes).
  if (opt.position_ids && !opt.position_ids->device().is_meta()) {
    Tensor pos = opt.position_ids->to(kCPU).clone();  // (B, T) i32, a copy: the offset is added in place
    int32_t* p = pos.data<int32_t>();
    for (int64_t i = 0; i < B * T; ++i) {
      if (p[i] >= max_positions()) fail_beyond(p[i], max_positions());
      if (p[i] + offset < 0) fail("position ids must be >= {}, got {}", -offset, p[i]);
      p[i] += offset;
    }
    return pos.to(dev);
  }
  if (from_mask && opt.attention_mask) {
    // OPT: cumsum(mask) * mask - 1 over all S keys, the last T, made where
    // the mask is: at most S - 1, -1 at padding (plus the offset).
    const int64_t S = opt.attention_mask->size(1);
    if (T > 0 && S - 1 >= max_positions()) fail_beyond(S - 1, max_positions());
    return ops::mask_positions(*opt.attention_mask, T, offset).to(dev);
  }
  // past .. past + T - 1 for every row, made on the device: nothing to copy there.
  const int64_t last = past_length(opt) + T - 1;
  if (T > 0 && last >= max_positions()) fail_beyond(last, max_positions());
  return ops::arange({B, T}, past_length(opt) + offset, dev);
}

AttentionParams CausalLM::attention_params(int64_t queries, int64_t keys, float scale, const ForwardOptions& opt) const {
  AttentionParams params;
  params.scale = scale;
  params.causal = true;  // query t sees keys up to t + (S - T): all earlier keys
  params.key_mask = opt.attention_mask;
  params.segment_ids = opt.segment_ids;
  if (is_training() && config_.attn_pdrop > 0.f) {
    params.dropout = config_.attn_pdrop;
    params.seed = nn::next_dropout_seed(attn_dropout_instance_);
    params.dropout_offset = nn::dropout_offset(queries * keys);  // of the (B, H, T, S) probabilities
  }
  return params;
}

Variable CausalLM::self_attention(const Variable& q, const Variable& k, const Variable& v, int layer, float scale,
                                  const ForwardOptions& opt) const {
  const int64_t B = q.size(0), T = q.size(1);
  const int64_t H = num_heads(), D = head_dim();
  // (B, T, C) -> (B, T, H, D) -> (B, H, T, D): views, no copy.
  auto split_heads = [&](const Variable& x) { return ag::permute(ag::reshape(x, {B, T, H, D}), {0, 2, 1, 3}); };
  Variable qh = split_heads(q);  // (B, H, T, D)
  Variable kh = split_heads(k);  // (B, H, T, D)
  Variable vh = split_heads(v);  // (B, H, T, D)

  // A prefix goes in front of the keys, once: with a cache it is stored by the first call.
  bool cache_empty = !opt.cache || opt.cache->length(layer) == 0;
  if (opt.prefix && cache_empty) {
    const KeyValue& prefix = (*opt.prefix)[size_t(layer)];
    kh = ag::cat({prefix.key, kh}, 2);    // (B, H, P + T, D)
    vh = ag::cat({prefix.value, vh}, 2);  // (B, H, P + T, D)
  }
  if (opt.cache) {
    auto [keys, values] = opt.cache->append(layer, kh.value(), vh.value());
    kh = Variable(keys);    // (B, H, S, D), S = everything so far
    vh = Variable(values);  // (B, H, S, D)
  }
  const AttentionParams params = attention_params(B * H * T, kh.size(2), scale, opt);
  return merge_heads(ag::attention(qh, kh, vh, params));  // (B, T, C)
}

Variable CausalLM::self_attention(const Variable& qkv, int layer, float scale, const ForwardOptions& opt) const {
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3;
  if (opt.prefix || opt.cache)  // keys and values grow in front or across calls: one at a time
    return self_attention(ag::narrow(qkv, 2, 0, C), ag::narrow(qkv, 2, C, C), ag::narrow(qkv, 2, 2 * C, C), layer,
                          scale, opt);
  const int64_t H = num_heads(), D = head_dim();
  // (B, T, 3C) -> (B, T, 3, H, D) -> (3, B, H, T, D): a view; ag::attention makes it contiguous once.
  Variable heads = ag::permute(ag::reshape(qkv, {B, T, 3, H, D}), {2, 0, 3, 1, 4});
  const AttentionParams params = attention_params(B * H * T, T, scale, opt);
  return merge_heads(ag::attention(heads, params));  // (B, T, C)
}

Variable CausalLM::merge_heads(const Variable& y) const {
  const int64_t B = y.size(0), H = y.size(1), T = y.size(2), D = y.size(3);
  return ag::reshape(ag::permute(y, {0, 2, 1, 3}), {B, T, H * D});  // (B, H, T, D) -> (B, T, C)
}

}  // namespace mp::models
