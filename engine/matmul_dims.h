// The sizes of one Backend::matmul call (engine/backend.h), checked against
// the tensors' shapes. Every backend's matmul starts with it, so a bad call
// reads the same on any device.
//
//   out (batch, M, N) = alpha * op(a) op(b) + beta * out
//   a (batch or 1, M, K), stored (.., K, M) when trans_a
//   b (batch or 1, K, N), stored (.., N, K) when trans_b
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace mp {

struct MatmulDims {
  int64_t batch, M, N, K;
  int64_t batch_a, batch_b;  // 1: shared by every batch entry
};

// mp::Error unless a, b, out are contiguous 3-D tensors whose shapes agree.
MatmulDims matmul_dims(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out);

}  // namespace mp
