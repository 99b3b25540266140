// The dtype that new weight matrices are made in: Linear weights and
// Embedding tables. f32 unless a WeightDTypeScope says otherwise:
//
//   { nn::WeightDTypeScope scope(DType::bf16); model = std::make_unique<GPT2>(config); }
//
// models::make_model(config, seed, DType::bf16) does this to build a base
// whose matrices are bf16 from the start (no f32 copy ever exists): half the
// weight bytes of a base that PEFT keeps frozen. Biases and layer norms stay
// f32 (they are small, and added or normalised in f32). The engine's matmul
// and embedding read bf16 and compute in f32; optimizers refuse a trainable
// bf16 parameter (they keep f32 master weights), so a bf16 base is trained
// only through an adapter.
#pragma once
#include "engine/thread_state.h"

namespace mp::nn {

inline DType weight_dtype() { return thread_state().weight_dtype; }

// WeightDTypeScope(dtype): f32, bf16 or f64 (gradient checks); another dtype is an mp::Error.
using WeightDTypeScope = FieldScope<&ThreadState::weight_dtype>;

}  // namespace mp::nn
