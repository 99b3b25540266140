#include "nn/state_dict.h"

#include <algorithm>
#include <map>

#include "engine/error.h"

namespace mp::nn {

NamedTensors state_dict(const Module& m) {
  NamedTensors out;
  for (const auto& [name, v] : m.named_parameters()) out.emplace_back(name, v.value());
  for (const auto& [name, b] : m.named_buffers()) out.emplace_back(name, b);
  return out;
}

namespace {

// What load_state_dict needs from a checkpoint, whatever holds it.
struct Source {
  std::string description;  // the file name, or "state dict"
  std::vector<std::string> keys;
  std::function<Shape(const std::string&)> shape;
  std::function<bool(const std::string&)> is_integer;  // integer values (they load only into i32 tensors)
  std::function<void(const std::string&, const Tensor&)> copy_into;
};

// "a, b, c" with at most `limit` names, then how many more.
std::string list(const std::vector<std::string>& names, size_t limit = 20) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < limit; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > limit) out += fmt::format(", ... ({} more)", names.size() - limit);
  return out;
}

LoadResult load(Module& m, const Source& src, bool strict, const KeyRename& rename) {
  std::map<std::string, Tensor> targets;  // model name -> its tensor
  for (const auto& [name, t] : state_dict(m)) targets.emplace(name, t);

  LoadResult result;
  std::vector<std::string> problems;
  std::map<std::string, std::string> plan;  // model name -> checkpoint key
  for (const std::string& key : src.keys) {
    std::optional<std::string> name = rename ? rename(key) : std::optional<std::string>(key);
    if (!name) {
      result.skipped.push_back(key);
      continue;
    }
    auto target = targets.find(*name);
    if (target == targets.end()) {
      result.unexpected.push_back(*name == key ? key : fmt::format("{} (from {})", *name, key));
      continue;
    }
    if (auto [it, fresh] = plan.emplace(*name, key); !fresh) {
      problems.push_back(fmt::format("{}: provided by both '{}' and '{}'", *name, it->second, key));
      continue;
    }
    Shape shape = src.shape(key);
    if (shape != target->second.shape())
      problems.push_back(fmt::format("{}: checkpoint has {}, model expects {}", *name, shape_str(shape),
                                     shape_str(target->second.shape())));
    else if (bool(src.is_integer(key)) != (target->second.dtype() == DType::i32))
      problems.push_back(fmt::format("{}: checkpoint holds {} values, model expects {}", *name,
                                     src.is_integer(key) ? "integer" : "float", dtype_name(target->second.dtype())));
  }
  for (const auto& [name, t] : targets)
    if (!plan.count(name)) result.missing.push_back(name);

  std::vector<std::string> all;
  if (strict && !result.missing.empty()) all.push_back("missing keys: " + list(result.missing));
  if (strict && !result.unexpected.empty()) all.push_back("unexpected keys: " + list(result.unexpected));
  all.insert(all.end(), problems.begin(), problems.end());
  if (!all.empty()) {
    std::string msg = fmt::format("{}: cannot load into the model:", src.description);
    for (const std::string& p : all) msg += "\n  " + p;
    throw Error(msg);
  }

  ag::NoGrad no_grad;
  TagScope scope(Tag::workspace);  // any conversion temporaries
  for (const auto& [name, key] : plan) {
    src.copy_into(key, targets.at(name));
    ++result.loaded;
  }
  return result;
}

}  // namespace

LoadResult load_state_dict(Module& m, const SafetensorsFile& file, bool strict, const KeyRename& rename) {
  Source src;
  src.description = file.path();
  src.keys = file.names();
  src.shape = [&](const std::string& k) { return file.info(k).shape; };
  src.is_integer = [&](const std::string& k) {
    StDType t = file.info(k).dtype;
    return t == StDType::I32 || t == StDType::I64;
  };
  src.copy_into = [&](const std::string& k, const Tensor& dst) { file.load_into(k, dst); };
  return load(m, src, strict, rename);
}

LoadResult load_state_dict(Module& m, const std::map<std::string, Tensor>& tensors, bool strict,
                           const KeyRename& rename) {
  Source src;
  src.description = "state dict";
  for (const auto& [k, t] : tensors) src.keys.push_back(k);
  src.shape = [&](const std::string& k) { return tensors.at(k).shape(); };
  src.is_integer = [&](const std::string& k) { return tensors.at(k).dtype() == DType::i32; };
  src.copy_into = [&](const std::string& k, const Tensor& dst) { Tensor(dst).copy_from(tensors.at(k)); };
  return load(m, src, strict, rename);
}

LoadResult load_state_dict(Module& m, const NamedTensors& tensors, bool strict, const KeyRename& rename) {
  std::map<std::string, Tensor> map;
  for (const auto& [k, t] : tensors)
    if (!map.emplace(k, t).second) fail("state dict: key '{}' appears twice", k);
  return load_state_dict(m, map, strict, rename);
}

}  // namespace mp::nn
