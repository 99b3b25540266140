// Shared by cross_entropy and linear_cross_entropy: the checks on the
// targets and the number of rows that take part in the mean.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace mp::ag::detail {

// targets must be (N) i32 for N rows of logits; mp::Error naming `op` and the shapes.
void check_targets(const char* op, const Tensor& targets, int64_t N);
// Rows whose target is not ignore_index (the targets are small: counted on
// the host). Meta targets have no values: every row counts (the count scales
// the loss, not its bytes).
int64_t count_targets(const Tensor& targets, int ignore_index);
// The scale of the rows' gradients: g (1), the loss's incoming gradient,
// times inv_count (a meta g has no value: inv_count alone).
float gradient_scale(const Tensor& g, float inv_count);

}  // namespace mp::ag::detail
