// Linear: y = x W^T + b, with the weight stored either way round:
//
//   Layout::torch   weight (out, in)   torch.nn.Linear, OPT
//   Layout::conv1d  weight (in, out)   GPT-2's Conv1D in Hugging Face
//
// Both call ag::linear, which reads the weight transposed or not without a
// copy, so a GPT-2 checkpoint loads as is.
//
// The adapter seam. PEFT (a later layer, unknown here) changes what a Linear
// computes by attaching a LinearAdapter: Linear::forward computes the base
// output and hands it, with the input, to the adapter, which returns the
// final output. LoRA returns base_out + scale * B(A(dropout(x))). The adapter
// is registered as a child module under the name given to set_adapter, so its
// parameters are named with that prefix ("h.0.attn.c_attn.lora.A.weight")
// and are saved, frozen, counted and optimised like any others.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/nf4.h"
#include "nn/module.h"
#include "nn/rng.h"

namespace mp::nn {

enum class Layout : uint8_t { torch, conv1d };

class Linear;

// What PEFT implements to change a Linear's output. `enabled` lets a caller
// turn the adapter off (Linear::forward then returns the base output).
struct LinearAdapter : Module {
  bool enabled = true;
  // x (..., in) -> what the base layer computes on (IA3 scales a
  // feed-forward layer's input here); x itself by default.
  virtual Variable input(const Variable& x) { return x; }
  // x (..., in), base_out (..., out) = the Linear's own output -> (..., out).
  virtual Variable forward(const Variable& x, const Variable& base_out, const Linear& base) = 0;
};

class Linear : public Module {
 public:
  // torch layout: weight ~ kaiming_uniform(a = sqrt(5)), bias ~ U(+-1/sqrt(in))
  // (torch.nn.Linear); conv1d layout: weight ~ N(0, 0.02), bias 0 (HF Conv1D).
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Layout layout = Layout::torch,
         uint64_t seed = next_init_seed());
  // A layer without bias around an existing torch-layout weight (out, in),
  // its storage shared, not copied (an untied head: CausalLM::untie_lm_head).
  explicit Linear(const Tensor& weight);

  // x (..., in) -> (..., out)
  Variable forward(const Variable& x);
  // The output without the adapter: x W^T + b.
  Variable base_forward(const Variable& x) const;

  // Attach an adapter, registered as the child module `name`; replaces any
  // adapter already attached. clear_adapter() detaches it (its parameters
  // leave named_parameters()).
  void set_adapter(const std::string& name, std::shared_ptr<LinearAdapter> adapter);
  void clear_adapter();
  const std::shared_ptr<LinearAdapter>& adapter() const { return adapter_; }
  const std::string& adapter_name() const { return adapter_name_; }

  // QLoRA's frozen base: store the weight in NF4 (engine/nf4.h), always as
  // (out, in) whatever the layout (the order bitsandbytes quantizes HF's
  // Linear4bit weight in). The f32/bf16 weight is freed and leaves
  // named_parameters(); `weight` becomes undefined and base_forward uses
  // ag::linear_nf4. A trainable weight is an mp::Error: NF4 is frozen storage.
  void quantize_nf4();
  // Use w, an NF4 (out, in) matrix made elsewhere (bitsandbytes' bytes, read
  // with nn/nf4_weights.h), as the weight, as quantize_nf4 would. mp::Error
  // for another shape or a trainable weight.
  void set_nf4_weight(std::shared_ptr<const Nf4Tensor> w);
  // The reverse, for merging: the weight back as a frozen f32 parameter
  // holding the dequantized values. Nothing to do without an NF4 weight.
  void dequantize_nf4();
  // The NF4 weight; null unless quantize_nf4() was called.
  const std::shared_ptr<const Nf4Tensor>& nf4_weight() const { return nf4_; }

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  Layout layout() const { return layout_; }

  Variable weight;  // (out, in) for Layout::torch, (in, out) for Layout::conv1d; undefined when NF4
  Variable bias;    // (out), undefined when built without bias

 private:
  void check_frozen() const;  // mp::Error if the weight is trainable
  int64_t in_, out_;
  Layout layout_ = Layout::torch;
  std::shared_ptr<const Nf4Tensor> nf4_;
  std::shared_ptr<LinearAdapter> adapter_;
  std::string adapter_name_;
};

}  // namespace mp::nn
