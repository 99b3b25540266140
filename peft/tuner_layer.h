// TunerLayer: what a PEFT method that wraps nn::Linear layers (LoRA, IA3)
// offers PeftModel, so that switching, deleting, merging and unmerging
// adapters work the same for each. One TunerLayer holds every named adapter
// of its layer; at most one is active, at most one merged.
#pragma once
#include <string>

#include "nn/linear.h"

namespace mp::peft {

struct TunerLayer : nn::LinearAdapter {
  virtual bool has_adapter(const std::string& name) const = 0;
  virtual void delete_adapter(const std::string& name) = 0;  // it must not be merged
  // The adapter forward() applies ("" = none).
  virtual void set_active(const std::string& name) = 0;
  // Fold the active adapter into base's weight (and bias) / take it out again.
  virtual void merge(nn::Linear& base) = 0;
  virtual void unmerge(nn::Linear& base) = 0;
  virtual bool merged() const = 0;
};

}  // namespace mp::peft
