// The memory report: what one training step (forward, backward, AdamW
// update) of a GPT-2 or OPT model costs, per category, predicted from the
// shapes alone and then measured by the Ledger.
//
// The prediction follows the engine's rules, not a rule of thumb:
//   weights     every base parameter (a tied lm_head once): f32, except the
//               weight matrices and embedding tables, which are in the base's
//               weight dtype (bf16 halves them; see nn/weight_dtype.h); plus
//               the constant unit weight (C, f32) of an OPT layer norm without
//               elementwise affine, which has no parameters
//   adapter     the adapter's parameters (Tag::adapter)
//   grads       one f32 per TRAINABLE parameter (a frozen one gets no buffer)
//   optimizer   AdamW's m and v: two f32 per trainable parameter
//   activations the peak of Tag::activations in the step, which the forward
//               pass reaches (gradients in flight during backward are
//               Tag::workspace, not counted here). Two parts. First, what the
//               autograd nodes keep for backward, per op (see autograd/ops/):
//                 layer_norm   x (N, C), mean and rstd (N), when x or w needs a gradient
//                 linear       x, only when W is trainable (full FT)
//                 lora_down    x and lora_B's input (N, r); dropout adds nothing
//                 attention    q, k, v (contiguous copies), out, lse, when anything needs a gradient
//                 gelu, relu   their input (N, F)
//                 cross_entropy the logits (N, V)
//                 embedding    of positions, when trainable: the position ids (N, i32)
//               A storage counts once: OPT's q_proj, k_proj and v_proj read
//               one tensor and keep it once (a reshape of a contiguous tensor
//               is a view; the merged heads, a reshape of a permuted one, are
//               a copy). Second, what the models' code holds alive without a
//               node keeping it, at the larger of two moments:
//                 a layer's MLP (the last's, as a rule: it runs with the
//                   most kept): the token embeddings, the layer's
//                   q, k, v and attention output, its residual stream, the
//                   MLP's input and (N, F) tensors, and the running linear
//                   layer's output (a LoRA layer briefly makes four (N, out))
//                 the head: the last hidden state (N, E) and the logits (N, V)
//               The head wins when V is large (GPT-2's and OPT's 50k), the
//               MLP when V is small. Prompt tuning's concatenated embeddings
//               are held through the whole step, and so is the prefix MLP's
//               output table.
//               A layer's input needs a gradient when anything before it is
//               trained: always for full FT and prompt tuning; from the first
//               adapted layer on for LoRA and prefix tuning.
//
// N = B * T tokens (prompt tuning: B * (P + T), its virtual tokens run
// through every layer); prefix tuning adds P keys and values per layer.
// C is the width of the layers, F of the MLP, E of the token embeddings
// (OPT's word_embed_proj_dim; project_in/project_out map E <-> C).
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

// Predict one training step's peak bytes per category for a GPT-2 or OPT
// shaped model; `peft` empty = full fine-tuning. mp::Error for LoRA targets
// that name no linear layer of the transformer layers, or that name one
// outside them (OPT's project_in/project_out, an untied lm_head).
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
