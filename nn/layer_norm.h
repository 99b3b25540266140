// LayerNorm over the last axis (torch.nn.LayerNorm):
//   y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias
// with the biased variance (divide by C). The maths is ag::layer_norm.
#pragma once
#include <cstdint>

#include "nn/module.h"

namespace mp::nn {

class LayerNorm : public Module {
 public:
  // weight = 1, bias = 0. Without elementwise_affine there are no parameters
  // (weight and bias stay undefined); without bias, only the weight.
  explicit LayerNorm(int64_t normalized_size, float eps = 1e-5f, bool elementwise_affine = true, bool bias = true);

  // x (..., C) -> (..., C)
  Variable forward(const Variable& x) const;

  int64_t normalized_size() const { return size_; }
  float eps() const { return eps_; }

  Variable weight;  // (C) or undefined
  Variable bias;    // (C) or undefined

 private:
  int64_t size_;
  float eps_;
  Variable unit_weight_;  // (C) of ones, not a parameter: the weight when there is no affine part
};

}  // namespace mp::nn
