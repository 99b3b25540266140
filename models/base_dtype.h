// How a CausalLM's frozen base stores its weights, one choice named as
// --base-dtype takes it: f32 (the default), bf16 (weight matrices and
// embedding tables in bf16, half the bytes) or nf4 (QLoRA: Linear weights in
// NF4, embeddings in bf16; models/nf4_base.h). bf16 and nf4 hold frozen
// weights only: such a base trains through a PEFT method.
#pragma once
#include <cstdint>
#include <string_view>

#include "engine/dtype.h"

namespace mp::models {

enum class BaseDType : uint8_t { f32, bf16, nf4 };
inline constexpr BaseDType kBaseDTypes[] = {BaseDType::f32, BaseDType::bf16, BaseDType::nf4};

// "f32", "bf16" or "nf4".
std::string_view base_dtype_name(BaseDType base);

// The base dtype a name names; mp::Error naming `name` for any other string.
BaseDType parse_base_dtype(std::string_view name);

// The dtype the model is made in (make_model's weight_dtype): an nf4 base is
// made in f32, then quantized (quantize_base_nf4).
constexpr DType weight_dtype(BaseDType base) { return base == BaseDType::bf16 ? DType::bf16 : DType::f32; }

}  // namespace mp::models
