#include "models/load.h"

#include <filesystem>

#include "engine/error.h"
#include "models/gpt2.h"
#include "models/opt.h"
#include "nn/atomic_file.h"
#include "nn/safetensors.h"
#include "nn/state_dict.h"
#include "nn/weight_dtype.h"

namespace mp::models {

namespace fs = std::filesystem;

std::unique_ptr<CausalLM> make_model(const ModelConfig& config, uint64_t seed, DType weight_dtype) {
  nn::WeightDTypeScope scope(weight_dtype);
  switch (config.arch) {
    case Arch::gpt2: return std::make_unique<GPT2>(config, seed);
    case Arch::opt: return std::make_unique<OPT>(config, seed);
  }
  fail("make_model: unknown architecture");
}

// The checkpoint file of a model directory, or an mp::Error saying why there is none.
static std::string weights_file(const fs::path& dir) {
  fs::path st = dir / "model.safetensors";
  if (fs::exists(st)) return st.string();
  if (fs::exists(dir / "model.safetensors.index.json"))
    fail("{}: holds a sharded checkpoint (model.safetensors.index.json); only a single model.safetensors is "
         "supported. Re-save it unsharded: model.save_pretrained(dir, max_shard_size=\"100GB\")",
         dir.string());
  if (fs::exists(dir / "pytorch_model.bin"))
    fail("{}: contains pytorch_model.bin; only safetensors are supported; convert with python -c \"from "
         "transformers import AutoModelForCausalLM as M; M.from_pretrained('{}').save_pretrained('{}', "
         "safe_serialization=True)\"",
         dir.string(), dir.string(), dir.string());
  fail("{}: no model.safetensors in the model directory", dir.string());
}

std::unique_ptr<CausalLM> load_pretrained(const std::string& dir, DType weight_dtype) {
  if (!fs::is_directory(dir)) fail("{}: not a model directory", dir);
  ModelConfig config = load_config((fs::path(dir) / "config.json").string());
  std::string path = weights_file(dir);
  nn::SafetensorsFile file = nn::SafetensorsFile::open(path);

  std::unique_ptr<CausalLM> model = make_model(config, 0, weight_dtype);
  const CausalLM& m = *model;
  nn::KeyRename rename = [&m](const std::string& key) -> std::optional<std::string> {
    if (m.ignorable_checkpoint_key(key)) return std::nullopt;
    return m.canonical_name(key);
  };
  try {
    nn::load_state_dict(*model, file, /*strict=*/true, rename);
  } catch (const Error& e) {
    fail("{}: does not match {}/config.json: {}", path, dir, e.what());
  }
  model->eval();  // as from_pretrained: dropout off until train() is called
  return model;
}

void save_pretrained(const CausalLM& model, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create the directory: {}", dir, ec.message());
  nn::write_file_atomically((fs::path(dir) / "config.json").string(), model.config().to_json());
  // transformers refuses a safetensors file without format = pt metadata.
  nn::save_safetensors((fs::path(dir) / "model.safetensors").string(), nn::state_dict(model), {{"format", "pt"}});
}

ModelConfig config_of(const std::string& name_or_dir) {
  if (fs::is_directory(name_or_dir)) return load_config((fs::path(name_or_dir) / "config.json").string());
  return builtin_config(name_or_dir);
}

std::unique_ptr<CausalLM> create_model(const std::string& name_or_dir, uint64_t seed, DType weight_dtype) {
  if (fs::is_directory(name_or_dir)) return load_pretrained(name_or_dir, weight_dtype);
  return make_model(builtin_config(name_or_dir), seed, weight_dtype);
}

}  // namespace mp::models
