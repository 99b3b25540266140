// What a training checkpoint says about itself: the "minipeft_checkpoint"
// metadata of its safetensors header, a JSON object
//
//   {"step": 40, "rng": [seed, init_counter, dropout_counter, dropout_instances],
//    "run": {"model": ..., "method": ..., ...}, "ranks": 2}
//
// written and read here (through nn/json_input.h), so that a damaged or
// hand-edited checkpoint is an mp::Error naming the file and the key.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "nn/rng.h"
#include "nn/safetensors.h"

namespace mp::train {

inline constexpr const char* kCheckpointMetaKey = "minipeft_checkpoint";

struct CheckpointMeta {
  int64_t step = 0;    // the optimizer steps done when it was written
  nn::RngState rng;    // the random state then
  nlohmann::json run;  // the run's identity (model, method, batch, ...): an object
  int ranks = 1;       // the processes that wrote it
};

std::string checkpoint_meta_json(const CheckpointMeta& m);

// The metadata of `path` from its text: mp::Error naming `path` and the key
// when it is not JSON, lacks a key, or holds a value of the wrong type or
// range (a step < 0, ranks < 1).
CheckpointMeta parse_checkpoint_meta(std::string_view text, const std::string& path);

// The metadata of an opened checkpoint; mp::Error when it has none (not a
// minipeft checkpoint).
CheckpointMeta read_checkpoint_meta(const nn::SafetensorsFile& file, const std::string& path);

}  // namespace mp::train
