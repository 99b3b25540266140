// Dropout (torch.nn.Dropout): in training, zero each element with
// probability p and scale the rest by 1 / (1 - p); in eval mode, or with
// p = 0, the identity.
//
// No mask is stored: each call draws a seed and the Philox kernel derives the
// mask from (seed, element index), so backward regenerates it. The seed of a
// call is mix(base seed, instance id, global call counter) (see nn/rng.h), so
// a run is reproducible from nn::manual_seed and resumable from RngState.
#pragma once
#include <cstdint>
#include <optional>

#include "nn/module.h"

namespace mp::nn {

class Dropout : public Module {
 public:
  // base_seed: fixed for this instance; by default the global seed at each call.
  explicit Dropout(float p, std::optional<uint64_t> base_seed = std::nullopt);

  // x (...) -> (...)
  Variable forward(const Variable& x) const;

  float p() const { return p_; }
  uint64_t instance_id() const { return instance_; }

 private:
  float p_;
  std::optional<uint64_t> base_seed_;
  uint64_t instance_;
};

}  // namespace mp::nn
