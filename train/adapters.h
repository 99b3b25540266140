// Several adapters on one base, as `minipeft generate` and `eval` load them
// for mixed batches: --adapter name=folder, repeated (a bare folder is
// named "default").
#pragma once
#include <string>
#include <vector>

#include "train/trainer.h"

namespace mp::train {

struct AdapterSpec {
  std::string name, dir;
};

// An --adapter value: "name=folder", or "folder" named "default"; mp::Error
// for an empty name or folder.
AdapterSpec parse_adapter_spec(const std::string& spec);

// The base (load_model's) with every adapter of `specs` (each --adapter's
// value: "name=folder", or "folder" named "default") loaded under its name,
// the first one active, in eval mode; mp::Error for an empty name or folder,
// a name given twice, or adapters of different families (LoRA and prompt
// methods cannot share a batch).
TrainedModel load_model_with_adapters(const std::string& model, const std::vector<std::string>& specs,
                                      uint64_t seed = 0,
                                      models::BaseDType base_dtype = models::BaseDType::f32, Device device = kCPU);

// Each row's adapter for PeftModel's mixed forward: its own name, or
// PeftModel::kBaseName when it names none. mp::Error naming `where` and the
// row for an adapter that was not loaded.
std::vector<std::string> row_adapters(const std::vector<std::string>& names, const TrainedModel& m,
                                      const std::string& where);

}  // namespace mp::train
