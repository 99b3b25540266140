#include "peft/lora.h"

#include <algorithm>
#include <cmath>

#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "nn/init.h"
#include "nn/rng.h"
#include "peft/dora.h"

namespace mp::peft {

// Forward:  h = dropout(x) A^T, the mask drawn from Philox(seed).
// Backward, with g = dh (..., r):
//   dA (r, in) = g^T dropout(x)          -- dropout(x) recomputed from x and the seed
//   dx (..., in) = dropout'(g A)         -- the same mask and 1/(1-p) applied to g A
// Only x (for dA) and A (for dx) are kept, each only when the other side
// needs its gradient, as ag::linear does.
Variable lora_down(const Variable& x, const Variable& a, float p, uint64_t seed, uint64_t offset) {
  const int64_t r = a.size(0), in = a.size(1);
  if (x.dim() < 1 || x.size(-1) != in)
    fail("LoRA: input {} does not match lora_A {}", shape_str(x.shape()), shape_str(a.shape()));
  auto drop = [p, seed, offset](const Tensor& t) { return p > 0.f ? ops::dropout(t, p, seed, offset) : t; };

  const bool need_x = ag::needs_grad(x), need_a = ag::needs_grad(a);
  Tensor x2 = x.value().reshape({-1, in});               // (N, in)
  Tensor h2 = ops::matmul(drop(x2), a.value(), false, true);  // (N, r); dropout(x) freed right here
  Shape h_shape = x.shape();
  h_shape.back() = r;

  Tensor keep_x = need_a ? x2 : Tensor();         // the undropped input, for dA
  Tensor keep_a = need_x ? a.value() : Tensor();  // for dx
  Shape x_shape = x.shape();
  return ag::make_result(h2.view(h_shape), "lora_down", {x, a}, [=](const Tensor& g, std::span<Tensor> gin) {
    Tensor g2 = g.reshape({-1, r});  // (N, r)
    if (need_x) gin[0] = drop(ops::matmul(g2, keep_a, false, false)).reshape(x_shape);  // (N, in)
    if (need_a) gin[1] = ops::matmul(g2, drop(keep_x), true, false);                   // (r, in)
  });
}

void add_lora_delta(const Tensor& W, nn::Layout layout, const LoraWeights& w, float alpha) {
  // torch layout W (out, in) += alpha * B (out, r) A (r, in)
  // conv1d layout W (in, out) += alpha * A^T (in, r) B^T (r, out)
  if (layout == nn::Layout::torch)
    ops::matmul_into(w.B.value(), false, w.A.value(), false, W, alpha, 1.f);
  else
    ops::matmul_into(w.A.value(), true, w.B.value(), true, W, alpha, 1.f);
}

void LoraLinear::add_adapter(const std::string& name, const LoraConfig& c, const nn::Linear& base, uint64_t seed) {
  const int64_t in = base.in_features(), out = base.out_features();
  if (name.empty() || name.find('.') != std::string::npos)
    fail("adapter name '{}' must be non-empty and contain no '.'", name);
  if (has_adapter(name)) fail("adapter '{}' already exists", name);
  if (c.r <= 0) fail("LoRA rank r must be > 0, got {}", c.r);

  TagScope scope(Tag::adapter);
  Tensor a = Tensor::empty({c.r, in});   // (r, in)
  Tensor b = Tensor::zeros({out, c.r});  // (out, r)
  switch (c.init_lora_weights) {
    case LoraInit::kaiming: nn::init::kaiming_uniform_(a, std::sqrt(5.0), seed); break;
    case LoraInit::gaussian: nn::init::normal_(a, 0.0, 1.0 / c.r, seed); break;
    case LoraInit::none:  // both as torch.nn.Linear leaves them
      nn::init::kaiming_uniform_(a, std::sqrt(5.0), seed);
      nn::init::kaiming_uniform_(b, std::sqrt(5.0), nn::mix_seed(seed, 1, 0));
      break;
  }
  auto ma = lora_A_->insert(name, std::make_shared<WeightModule>(a));
  auto mb = lora_B_->insert(name, std::make_shared<WeightModule>(b));
  LoraWeights w{ma->weight, mb->weight, c.r, c.scaling(), c.lora_dropout};
  if (c.use_dora)  // m = ||W0 + s B A||: the adapter starts as the base (plus s B A)
    w.magnitude = magnitudes_->insert(name, std::make_shared<WeightModule>(dora_weight_norm(base, w).clone()))->weight;
  adapters_[name] = w;
  if (active_.empty()) active_ = name;
}

void LoraLinear::delete_adapter(const std::string& name) {
  if (!has_adapter(name)) fail("no adapter '{}' to delete", name);
  if (merged_ == name) fail("adapter '{}' is merged; unmerge it before deleting it", name);
  lora_A_->erase(name);
  lora_B_->erase(name);
  magnitudes_->erase(name);
  adapters_.erase(name);
  if (active_ == name) active_.clear();
}

const LoraWeights& LoraLinear::weights(const std::string& name) const {
  auto it = adapters_.find(name);
  if (it == adapters_.end()) fail("no LoRA adapter '{}'", name);
  return it->second;
}

std::vector<std::string> LoraLinear::adapter_names() const {
  std::vector<std::string> names;
  for (const auto& [name, w] : adapters_) names.push_back(name);
  return names;
}

void LoraLinear::set_active(const std::string& name) {
  if (!name.empty() && !has_adapter(name)) fail("no LoRA adapter '{}'", name);
  if (merged() && name != merged_) fail("adapter '{}' is merged; unmerge it before switching to '{}'", merged_, name);
  active_ = name;
}

void LoraLinear::set_row_adapters(std::vector<std::string> names) {
  for (const std::string& n : names) {
    if (!n.empty() && !has_adapter(n)) fail("no LoRA adapter '{}'", n);
    if (!n.empty() && adapters_.at(n).magnitude.defined())
      fail("mixed batch: adapter '{}' uses DoRA, which a mixed batch cannot run (as in PEFT)", n);
  }
  if (!names.empty() && merged()) fail("adapter '{}' is merged; unmerge it before a mixed batch", merged_);
  row_adapters_ = std::move(names);
}

LoraLinear::Dropout LoraLinear::draw_dropout(const Variable& x, const LoraWeights& w) {
  const float p = is_training() ? w.dropout : 0.f;
  if (p == 0.f) return {};
  return {p, nn::next_dropout_seed(dropout_instance_), nn::dropout_offset(x.value().numel())};
}

Variable LoraLinear::update(const Variable& x, const LoraWeights& w) {
  const Dropout d = draw_dropout(x, w);
  Variable h = lora_down(x, w.A, d.p, d.seed, d.offset);  // (..., r)
  Variable up = ag::linear(h, w.B, Variable());           // (..., out)
  return ag::scale(up, w.scaling);                        // (..., out)
}

Variable LoraLinear::apply(const Variable& x, const Variable& base_out, const nn::Linear& base, const LoraWeights& w) {
  if (!w.magnitude.defined()) return ag::add(base_out, update(x, w));  // (..., out)
  const Dropout d = draw_dropout(x, w);
  return dora_forward(x, base_out, base, w, d.p, d.seed, d.offset);  // (..., out)
}

Variable LoraLinear::forward(const Variable& x, const Variable& base_out, const nn::Linear& base) {
  if (row_adapters_.empty()) {
    if (active_.empty() || merged()) return base_out;
    return apply(x, base_out, base, adapters_.at(active_));  // (..., out)
  }
  const int64_t B = x.size(0);
  if (int64_t(row_adapters_.size()) != B)
    fail("mixed batch: {} adapter names for a batch of {} rows", row_adapters_.size(), B);
  const std::string& first = row_adapters_[0];
  if (std::all_of(row_adapters_.begin(), row_adapters_.end(), [&](const std::string& n) { return n == first; }))
    return first.empty() ? base_out : apply(x, base_out, base, adapters_.at(first));  // one adapter: no masks
  Variable out = base_out;  // (B, ..., out)
  std::vector<std::string> done;
  for (const std::string& name : row_adapters_) {
    if (name.empty() || std::find(done.begin(), done.end(), name) != done.end()) continue;
    done.push_back(name);
    Variable up = update(x, adapters_.at(name));  // (B, ..., out)
    Shape rows_shape(size_t(x.dim()), 1);         // (B, 1, ..., 1)
    rows_shape[0] = B;
    std::vector<float> rows(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) rows[size_t(b)] = row_adapters_[size_t(b)] == name ? 1.f : 0.f;
    Tensor mask = Tensor::from_vector(rows, rows_shape, Tag::workspace).to(up.value().device());
    if (mask.dtype() != up.value().dtype()) mask = mask.to(up.value().dtype());
    out = ag::add(out, ag::mul(up, Variable(mask)));  // its rows: + update; the others: + 0
  }
  return out;
}

// The f32 base weight a merge rewrites in place.
static const Tensor& merge_target(const nn::Linear& base) {
  if (!base.weight.defined()) fail("LoRA merge needs an f32 base weight, got nf4 (dequantize it first)");
  const Tensor& W = base.weight.value();
  if (W.dtype() != DType::f32) fail("LoRA merge needs an f32 base weight, got {}", dtype_name(W.dtype()));
  return W;
}

void LoraLinear::merge(nn::Linear& base) {
  if (merged()) fail("adapter '{}' is already merged", merged_);
  if (active_.empty()) return;  // nothing to merge
  const Tensor& W = merge_target(base);
  const LoraWeights& w = adapters_.at(active_);
  if (w.magnitude.defined()) merged_norm_ = dora_merge(base, w);
  else add_lora_delta(W, base.layout(), w, w.scaling);
  merged_ = active_;
}

void LoraLinear::unmerge(nn::Linear& base) {
  if (!merged()) return;
  const Tensor& W = merge_target(base);
  const LoraWeights& w = adapters_.at(merged_);
  if (w.magnitude.defined()) dora_unmerge(base, w, merged_norm_);
  else add_lora_delta(W, base.layout(), w, -w.scaling);
  merged_norm_ = Tensor();
  merged_.clear();
}

}  // namespace mp::peft
