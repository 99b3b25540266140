// Shared helpers for the PEFT tests: where fixtures live, reading them, and
// mapping between our parameter names and HF PEFT's.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "engine/ops.h"
#include "nn/safetensors.h"
#include "tests/support/env.h"
#include "tests/support/temp_dir.h"

namespace mp::test {

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return nlohmann::json::parse(in);
}

inline void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
}

// HF PEFT's named_parameters() name -> ours: the LoRA matrices sit under the
// Linear's adapter seam "lora"; a wrapped layer's own bias has no "base_layer".
inline std::string our_name(std::string hf) {
  replace_all(hf, ".lora_A.", ".lora.lora_A.");
  replace_all(hf, ".lora_B.", ".lora.lora_B.");
  replace_all(hf, ".base_layer.", ".");
  return hf;
}

// Token ids (B, T) i32: a fixed pattern below `vocab`.
inline Tensor pattern_ids(int64_t B, int64_t T, int vocab) {
  std::vector<int32_t> v(size_t(B * T));
  for (size_t i = 0; i < v.size(); ++i) v[i] = int32_t((i * 7919 + 13) % size_t(vocab));
  return Tensor::from_vector(v, {B, T}, Tag::workspace);
}

// max |a - b| / max(max |b|, 1e-6).
inline double rel_error(const Tensor& a, const Tensor& b) {
  std::vector<float> x = a.to_floats(), y = b.to_floats();
  REQUIRE(x.size() == y.size());
  double diff = 0, scale = 1e-6;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, double(std::abs(x[i] - y[i])));
    scale = std::max(scale, double(std::abs(y[i])));
  }
  return diff / scale;
}

}  // namespace mp::test
