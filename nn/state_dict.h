// A module's state by name, and loading it back (torch's state_dict /
// load_state_dict). Names are the module's dotted parameter and buffer names.
//
//   save_safetensors("model.safetensors", state_dict(model));
//   load_state_dict(model, SafetensorsFile::open("model.safetensors"));
//
// Checkpoints written by other code name things differently; a KeyRename
// maps each checkpoint key to a model name, or to std::nullopt to skip it:
//
//   auto rename = [](const std::string& k) -> std::optional<std::string> {
//     if (k == "lm_head.weight") return std::nullopt;          // tied to wte
//     if (k.starts_with("transformer.")) return k.substr(12);  // HF prefix
//     return k;
//   };
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"
#include "nn/safetensors.h"

namespace mp::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using KeyRename = std::function<std::optional<std::string>(const std::string& checkpoint_key)>;

// Parameters then buffers, in module order; the tensors are shared, not copies.
NamedTensors state_dict(const Module& m);

struct LoadResult {
  std::vector<std::string> missing;     // model names no checkpoint key provided
  std::vector<std::string> unexpected;  // checkpoint keys (after renaming) the model does not have
  std::vector<std::string> skipped;     // checkpoint keys the rename mapped to nullopt
  size_t loaded = 0;
};

// Copy every checkpoint tensor into the model tensor of the same name
// (converting dtype, keeping the model's dtype and device). Shape mismatches
// and two keys renamed to one name are always errors; with `strict`, so are
// missing and unexpected keys. One mp::Error lists every problem at once:
//   "h.0.attn.c_attn.weight: checkpoint has (64, 192), model expects (64, 128)".
// Nothing is copied unless there is no error.
LoadResult load_state_dict(Module& m, const SafetensorsFile& file, bool strict = true, const KeyRename& rename = {});
LoadResult load_state_dict(Module& m, const std::map<std::string, Tensor>& tensors, bool strict = true,
                           const KeyRename& rename = {});
LoadResult load_state_dict(Module& m, const NamedTensors& tensors, bool strict = true, const KeyRename& rename = {});

}  // namespace mp::nn
