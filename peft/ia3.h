// IA3 (Liu et al. 2022, "Few-shot parameter-efficient fine-tuning is better
// and cheaper than in-context learning"), as HF PEFT 0.21 implements it. A
// frozen Linear gets one learned vector l that scales
//
//   its output:  h = (W0 x + b) * l     l (out, 1)   (keys, values, q_proj, ...)
//   its input:   h = W0 (x * l) + b     l (1, in)    (a feed-forward module)
//
// l starts at one, so a fresh adapter changes nothing. GPT-2's fused c_attn
// is scaled as one layer: PEFT's vector covers all 3C outputs, q included.
//
// Ia3Linear is the seam (nn::LinearAdapter) a Linear calls: input() for a
// feed-forward layer, forward() otherwise. Parameter names follow PEFT's
// ParameterDict under the seam's name "ia3":
//
//   transformer.h.0.attn.c_attn.ia3.ia3_l.default    (out, 1)
//   transformer.h.0.mlp.c_proj.ia3.ia3_l.default     (1, in)
//
// Memory: the product keeps its unscaled operand (the base output, or the
// layer's input) for l's gradient, as PyTorch does.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "nn/linear.h"
#include "peft/config.h"
#include "peft/modules.h"
#include "peft/tuner_layer.h"

namespace mp::peft {

class Ia3Linear : public TunerLayer {
 public:
  static constexpr const char* kSeamName = "ia3";

  // is_feedforward: scale the input (l (1, in)) rather than the output (l (out, 1)).
  explicit Ia3Linear(bool is_feedforward) : feedforward_(is_feedforward) {}
  bool is_feedforward() const { return feedforward_; }

  // Add adapter `name` for a Linear of in -> out features (under Tag::adapter):
  // ones, or N(0, 1) from `seed` with init_ia3_weights false.
  void add_adapter(const std::string& name, const Ia3Config& config, int64_t in_features, int64_t out_features,
                   uint64_t seed);
  void delete_adapter(const std::string& name) override;
  bool has_adapter(const std::string& name) const override { return vectors_.count(name) != 0; }
  // Adapter `name`'s vector: (out, 1), or (1, in) for a feed-forward layer.
  const Variable& vector(const std::string& name) const;
  void set_active(const std::string& name) override;

  // x (..., in) -> x * l for a feed-forward layer with an active, unmerged adapter; else x.
  Variable input(const Variable& x) override;
  // base_out (..., out) -> base_out * l for an output-scaling layer (active, unmerged); else base_out.
  Variable forward(const Variable& x, const Variable& base_out, const nn::Linear& base) override;

  // W *= l along the scaled axis (and, scaling the output, b *= l) / W, b /=
  // (l + 1e-8), as PEFT (which warns that unmerging may be inexact).
  void merge(nn::Linear& base) override;
  void unmerge(nn::Linear& base) override;
  bool merged() const override { return !merged_.empty(); }

 private:
  // The vector shaped to broadcast against the base's weight: l, or l^T for a Conv1D (in, out) weight.
  Tensor weight_factor(const nn::Linear& base, const Tensor& l) const;
  // W and b times (sign > 0) or divided by (sign < 0) the factors of l.
  void scale_base(nn::Linear& base, const Tensor& l, int sign) const;
  // The vector to apply in forward, or undefined (none active, or merged).
  const Variable* applied() const;

  bool feedforward_;
  std::shared_ptr<ParameterDict> ia3_l_ = add_module("ia3_l", std::make_shared<ParameterDict>());
  std::map<std::string, Variable> vectors_;
  std::string active_;
  std::string merged_;  // the adapter folded into the base, "" if none
};

}  // namespace mp::peft
