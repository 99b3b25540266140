// LoRA (Hu et al. 2021), as HF PEFT implements it. A frozen Linear W0 gets
// a low-rank update that is trained instead of W0:
//
//   h = W0 x + b + scale * B A dropout(x)        A (r, in), B (out, r)
//   scale = lora_alpha / r   (rsLoRA: lora_alpha / sqrt(r))
//
// A starts Kaiming-uniform (or Gaussian), B at zero, so a fresh adapter
// changes nothing. Dropout acts on the LoRA path only.
//
// LoraLinear is the nn::LinearAdapter that a Linear calls after computing
// W0 x + b. One LoraLinear holds every named adapter of its layer (PEFT's
// lora_A / lora_B ModuleDicts); one of them is active. Parameter names
// follow PEFT's, under the seam's name "lora":
//
//   transformer.h.0.attn.c_attn.lora.lora_A.default.weight   (r, in)
//   transformer.h.0.attn.c_attn.lora.lora_B.default.weight   (out, r)
//
// DoRA (use_dora, peft/dora.h) adds a trained magnitude per output channel,
//
//   transformer.h.0.attn.c_attn.lora.lora_magnitude_vector.default.weight   (out)
//
// and rescales the LoRA-updated layer by it (dora_forward).
//
// Memory: x is needed for A's gradient. With dropout, PyTorch keeps both x
// and dropout(x); here the op lora_down keeps x only and regenerates the
// dropout mask from its Philox seed in backward, so dropout costs no
// activation bytes.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/linear.h"
#include "nn/rng.h"
#include "peft/config.h"
#include "peft/modules.h"
#include "peft/tuner_layer.h"

namespace mp::peft {

// dropout(x) A^T without saving dropout(x): x (..., in), A (r, in) -> (..., r).
// Saves x (for A's gradient) and A (for x's gradient) only when needed; the
// dropout mask comes from Philox(seed) in forward and again in backward.
// `offset`: the mask's first element in the stream (nn::dropout_offset).
Variable lora_down(const Variable& x, const Variable& a, float p, uint64_t seed, uint64_t offset = 0);

// One adapter's settings and weights within one layer.
struct LoraWeights {
  Variable A;  // (r, in)
  Variable B;  // (out, r)
  int r = 0;
  float scaling = 1.f;
  float dropout = 0.f;
  Variable magnitude;  // (out): DoRA's m; undefined for plain LoRA
};

// W += alpha * B A, W in the layout of a Linear's weight: torch (out, in), conv1d (in, out).
void add_lora_delta(const Tensor& W, nn::Layout layout, const LoraWeights& w, float alpha);

class LoraLinear : public TunerLayer {
 public:
  // The name LoraLinear is registered under in its Linear.
  static constexpr const char* kSeamName = "lora";

  // Add adapter `name` for `base` (A, B, and DoRA's magnitude, under Tag::adapter).
  void add_adapter(const std::string& name, const LoraConfig& config, const nn::Linear& base, uint64_t seed);
  // Remove adapter `name` (it must not be merged); the active one falls back to none.
  void delete_adapter(const std::string& name) override;
  bool has_adapter(const std::string& name) const override { return adapters_.count(name) != 0; }
  const LoraWeights& weights(const std::string& name) const;
  std::vector<std::string> adapter_names() const;

  // Which adapter forward() adds ("" = none: the base output passes through).
  void set_active(const std::string& name) override;
  const std::string& active() const { return active_; }

  // Mixed batches (HF PEFT's adapter_names=): row b of the next forwards
  // runs with adapter names[b] ("" = none); empty: the active adapter for
  // every row. PeftModel sets and clears this around a mixed forward. A
  // DoRA adapter cannot be named (PEFT refuses it too).
  void set_row_adapters(std::vector<std::string> names);

  // base_out + scale * B A dropout(x) for the active adapter, unless merged
  // (a DoRA adapter: dora_forward's output).
  // x (..., in), base_out (..., out) -> (..., out). With row adapters, x
  // (B, ..., in): each adapter's update is computed for the batch and added
  // to its own rows only (times a 0/1 row mask), so a row gets exactly
  // base_out + its adapter's update, as when it runs alone.
  Variable forward(const Variable& x, const Variable& base_out, const nn::Linear& base) override;

  // Fold the active adapter into base.weight (W0 += scale * B A, transposed
  // for a Conv1D layout; DoRA: W0 = m / ||W0 + s B A|| * (W0 + s B A)) / take
  // it out again. While merged, forward() skips the LoRA path (the base
  // output already contains it).
  void merge(nn::Linear& base) override;
  void unmerge(nn::Linear& base) override;
  bool merged() const override { return !merged_.empty(); }
  const std::string& merged_adapter() const { return merged_; }

 private:
  // This forward's dropout on the LoRA path of w: p (0 in eval or without
  // dropout), the Philox seed and the mask's offset.
  struct Dropout {
    float p = 0.f;
    uint64_t seed = 0, offset = 0;
  };
  Dropout draw_dropout(const Variable& x, const LoraWeights& w);
  // scale * B A dropout(x) of plain-LoRA adapter w: x (..., in) -> (..., out).
  Variable update(const Variable& x, const LoraWeights& w);
  // base_out with adapter w applied: + update(x, w), or DoRA's output
  // (peft/dora.h). x (..., in), base_out (..., out) -> (..., out).
  Variable apply(const Variable& x, const Variable& base_out, const nn::Linear& base, const LoraWeights& w);
  std::shared_ptr<ModuleDict> lora_A_ = add_module("lora_A", std::make_shared<ModuleDict>());
  std::shared_ptr<ModuleDict> lora_B_ = add_module("lora_B", std::make_shared<ModuleDict>());
  std::shared_ptr<ModuleDict> magnitudes_ = add_module("lora_magnitude_vector", std::make_shared<ModuleDict>());
  std::map<std::string, LoraWeights> adapters_;
  std::string active_;
  std::vector<std::string> row_adapters_;  // per batch row, or empty
  std::string merged_;  // the adapter folded into the base weight, "" if none
  Tensor merged_norm_;  // DoRA: the norm the merge divided by (out), for unmerge
  uint64_t dropout_instance_ = nn::next_dropout_instance();  // part of each dropout seed
};

}  // namespace mp::peft
