// Shared by cross_entropy and linear_cross_entropy: the checks on the
// targets and the mean over the rows that take part in it. The count of
// those rows and the gradient's scale stay on the device: nothing here is
// read on the host (a GPU would wait for it).
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace mp::ag::detail {

// targets must be (N) i32 for N rows of logits; mp::Error naming `op` and the shapes.
void check_targets(const char* op, const Tensor& targets, int64_t N);
// loss (1) = the sum of the rows' losses (N) times inv_count (1) f32, from
// ops::inverse_target_count: the mean over the rows whose target counts.
Tensor mean_loss(const Tensor& losses, const Tensor& inv_count);
// The scale of the rows' gradients, (1) f32: g (1), the loss's incoming
// gradient, times inv_count (1) f32.
Tensor gradient_scale(const Tensor& g, const Tensor& inv_count);

}  // namespace mp::ag::detail
