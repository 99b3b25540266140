// QLoRA's frozen base (Dettmers et al. 2023), as HF transformers builds it with
// BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
// bnb_4bit_use_double_quant=True): every Linear but the LM head holds its
// weight in NF4 (engine/nf4.h, nn::Linear::quantize_nf4); what is not
// quantized, the embedding tables (the token table is the tied LM head),
// is kept in bf16; layer norms and biases stay f32.
//
// Only a frozen base can be quantized: PEFT trains adapters on top of it.
#pragma once
#include <cstddef>
#include <cstdint>

#include "models/causal_lm.h"

namespace mp::models {

// Quantize model's base in place. Every Linear weight to be quantized must
// be frozen (mp::Error naming the first trainable one); call it before PEFT
// attaches its adapters. A second call changes nothing.
void quantize_base_nf4(CausalLM& model);

// Back to f32 (merge writes a plain model): each NF4 weight dequantized, each
// bf16 table widened. The values are those the adapters were trained against.
void dequantize_base_nf4(CausalLM& model);

// How many Linear weights are NF4, their elements, and the bytes of each
// storage group of the model's parameters: NF4 matrices (codes and
// constants), bf16 tensors, f32 tensors.
struct BaseStorage {
  int64_t nf4_matrices = 0, nf4_elements = 0;
  size_t nf4_bytes = 0, bf16_bytes = 0, f32_bytes = 0;
};
BaseStorage base_storage(CausalLM& model);

}  // namespace mp::models
