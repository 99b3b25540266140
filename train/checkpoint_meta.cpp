#include "train/checkpoint_meta.h"

#include <climits>

#include "engine/error.h"
#include "nn/json_input.h"

namespace mp::train {

std::string checkpoint_meta_json(const CheckpointMeta& m) {
  const nn::RngState& r = m.rng;
  const nlohmann::json j = {{"step", m.step},
                            {"rng", {r.seed, r.init_counter, r.dropout_counter, r.dropout_instances}},
                            {"run", m.run},
                            {"ranks", m.ranks}};
  return j.dump();
}

CheckpointMeta parse_checkpoint_meta(std::string_view text, const std::string& path) {
  const nn::JsonSource source{fmt::format("{} metadata \"{}\"", path, kCheckpointMetaKey)};
  const nlohmann::json j = nn::parse_json(text, source);
  if (!j.is_object()) fail("{}: expected a JSON object, got {}", source.at(), j.type_name());
  CheckpointMeta m;
  m.step = nn::json_value<int64_t>(j, "step", source);
  if (m.step < 0) fail("{}: must be a step >= 0, not {}", source.at("step"), m.step);
  if (!j.contains("rng")) fail("{}: missing key \"rng\"", source.at());
  const nlohmann::json& rng = j.at("rng");
  if (!rng.is_array() || rng.size() != 4)
    fail("{}: must be 4 integers (seed and 3 counters), not {}", source.at("rng"), nn::printable(rng.dump()));
  uint64_t values[4];
  for (size_t i = 0; i < 4; ++i)
    values[i] = nn::json_as<uint64_t>(rng[i], fmt::format("rng[{}]", i), source);
  m.rng = {values[0], values[1], values[2], values[3]};
  if (!j.contains("run") || !j.at("run").is_object())
    fail("{}: must be an object (the run's model, method, batch, ...)", source.at("run"));
  m.run = j.at("run");
  if (j.contains("ranks")) {
    const int64_t ranks = nn::json_value<int64_t>(j, "ranks", source);
    if (ranks < 1 || ranks > INT_MAX) fail("{}: must be a count of processes >= 1, not {}", source.at("ranks"), ranks);
    m.ranks = int(ranks);
  }
  return m;
}

CheckpointMeta read_checkpoint_meta(const nn::SafetensorsFile& file, const std::string& path) {
  const auto it = file.metadata().find(kCheckpointMetaKey);
  if (it == file.metadata().end())
    fail("{} is not a minipeft checkpoint (no {} metadata)", path, kCheckpointMetaKey);
  return parse_checkpoint_meta(it->second, path);
}

}  // namespace mp::train
