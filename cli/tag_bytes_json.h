// Bytes per tag as one JSON object, {"weights": n, "grads": n, ...}: the
// form info --json, bench --json and compare's results.json share.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "engine/memory.h"

namespace mp::cli {

inline nlohmann::json tag_bytes_json(const TagBytes& bytes) {
  nlohmann::json j;
  for (int t = 0; t < kTags; ++t) j[std::string(tag_name(Tag(t)))] = bytes[size_t(t)];
  return j;
}

}  // namespace mp::cli
