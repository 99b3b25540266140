// Making, loading and saving models in Hugging Face's directory format:
//
//   dir/config.json         HF config (models/config.h)
//   dir/model.safetensors   HF parameter names ("transformer.h.0.attn.c_attn.weight", ...)
//
// A directory saved here opens with transformers' from_pretrained, and one
// saved by transformers (safetensors, unsharded) opens here.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "models/causal_lm.h"

namespace mp::models {

// A model of this config with random weights (HF's init) from `seed`.
// weight_dtype: the dtype of its weight matrices and embedding tables (biases
// and layer norms stay f32). bf16 halves their bytes for a base that PEFT
// keeps frozen; see nn/weight_dtype.h.
std::unique_ptr<CausalLM> make_model(const ModelConfig& config, uint64_t seed = 0, DType weight_dtype = DType::f32);

// Load dir/config.json and dir/model.safetensors. mp::Error naming the file
// for: no such directory, no config.json, a pytorch_model.bin-only directory,
// a sharded checkpoint, and (all at once) every missing, unexpected or
// mis-shaped tensor.
// The stored values are converted to the model's dtypes (weight_dtype as in make_model).
std::unique_ptr<CausalLM> load_pretrained(const std::string& dir, DType weight_dtype = DType::f32);

// Write dir/config.json and dir/model.safetensors (each atomically; the
// directory is created if needed). Every parameter in model's state dict is
// saved under its HF name; tied weights once, as HF does.
void save_pretrained(const CausalLM& model, const std::string& dir);

// A directory's config.json, or a built-in name's config: a model's shape
// without its weights.
ModelConfig config_of(const std::string& name_or_dir);

// A directory -> load_pretrained; a built-in name ("gpt2", "opt-125m", ...,
// see builtin_config) -> random weights from `seed`.
std::unique_ptr<CausalLM> create_model(const std::string& name_or_dir, uint64_t seed = 0,
                                       DType weight_dtype = DType::f32);

}  // namespace mp::models
