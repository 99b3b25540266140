// Losses.
#pragma once
#include "autograd/variable.h"

namespace mp::nn {

// torch.nn.functional.cross_entropy for language modelling:
// logits (..., V), targets (...) i32 with the same leading shape. The mean
// over targets != ignore_index of -log softmax(logits)[target]. Both are
// flattened to (N, V) and (N) and handed to ag::cross_entropy, which never
// stores the (N, V) probabilities.
ag::Variable cross_entropy(const ag::Variable& logits, const Tensor& targets, int ignore_index = -100);

}  // namespace mp::nn
