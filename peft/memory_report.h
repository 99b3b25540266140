// The memory report: what one training step (forward, backward, AdamW
// update) of a GPT-2 model costs, per category, predicted from the shapes
// alone and then measured by the Ledger.
//
// The prediction follows the engine's rules, not a rule of thumb:
//   weights     every base parameter (tied wte / lm_head once): f32, except
//               the weight matrices and embedding tables, which are in the
//               base's weight dtype (bf16 halves them; see nn/weight_dtype.h)
//   adapter     the adapter's parameters (Tag::adapter)
//   grads       one f32 per TRAINABLE parameter (a frozen one gets no buffer)
//   optimizer   AdamW's m and v: two f32 per trainable parameter
//   activations what the autograd nodes keep for backward at the end of the
//               forward pass, its peak (gradients in flight during backward
//               are Tag::workspace, not counted here). Per op (see autograd/ops/):
//                 layer_norm   x (N, C), mean and rstd (N), when x or w needs a gradient
//                 linear       x, only when W is trainable (full FT)
//                 lora_down    x (N, in) and lora_B's input (N, r); dropout adds nothing
//                 attention    q, k, v (contiguous copies), out, lse, when anything needs a gradient
//                 gelu         its input (N, 4C)
//                 cross_entropy the logits (N, V)
//               With a frozen base, three (N, C) tensors that are alive at the
//               peak but not saved (measured; full FT saves them anyway), and
//               the prefix MLP's output table.
//               A layer's input needs a gradient when anything before it is
//               trained: always for full FT and prompt tuning; from the first
//               adapted layer on for LoRA and prefix tuning.
//
// N = B * T tokens (prompt tuning: B * (P + T), its virtual tokens run
// through every layer); prefix tuning adds P keys and values per layer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "engine/dtype.h"
#include "models/config.h"
#include "peft/config.h"

namespace mp::peft {

struct MemoryBytes {
  size_t weights = 0, adapter = 0, grads = 0, optimizer = 0, activations = 0;
  size_t total() const { return weights + adapter + grads + optimizer + activations; }
};

// Predict one training step's peak bytes per category for a GPT-2 shaped
// model; `peft` empty = full fine-tuning. mp::Error for other architectures
// and for LoRA targets that are not GPT-2 linear layers.
MemoryBytes predict_training_memory(const models::ModelConfig& model, const std::optional<PeftConfig>& peft,
                                    int64_t batch, int64_t seq_len, DType weight_dtype = DType::f32);

// The same step measured: build the model (random weights from seed 1,
// matrices in weight_dtype) and the adapter, reset the Ledger's peaks, run
// forward + backward + AdamW once on fixed token ids (B, T), and return the
// peak bytes per category.
MemoryBytes measure_training_memory(const models::ModelConfig& model, const std::optional<PeftConfig>& peft,
                                    int64_t batch, int64_t seq_len, DType weight_dtype = DType::f32);

// A table: one row per category, predicted, measured and their ratio.
std::string memory_report(const MemoryBytes& predicted, const MemoryBytes& measured, const std::string& title);

}  // namespace mp::peft
