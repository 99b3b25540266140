// The method variants that the memory benchmarks and compare's scale section
// run side by side: one list, each with a short name (a row of compare's
// scale table), a title (a row of bench/plan_vs_measure) and what it changes
// in a TrainConfig (the method and its options; shape and seed stay).
#pragma once
#include <string_view>
#include <vector>

#include "train/trainer.h"

namespace mp::train {

struct MethodVariant {
  const char* name;   // "lora+recomp"
  const char* title;  // "LoRA r=8, recompute"
  void (*apply)(TrainConfig&);
};

const std::vector<MethodVariant>& method_variants();
// The variant of that name; an unknown name is an mp::Error listing the names.
const MethodVariant& method_variant(std::string_view name);

}  // namespace mp::train
