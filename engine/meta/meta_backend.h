// The meta backend: tensors with shapes, dtypes and tags but no bytes. Its
// allocations return no memory, and Storage counts them in the Ledger under
// the meta device exactly as it counts a real device's; its kernels compute
// nothing. Running the real code on meta tensors therefore allocates and
// frees, in the same order, what a run on the planned device would, which is
// how the memory planner (train/memory_plan.h) predicts a training step
// without doing it. Reading values (item(), to(kCPU)) is an mp::Error naming
// the tensor's shape (engine/tensor.cpp).
//
// What differs by the planned device is its memory, not its maths: the
// allocator's policy and the workspace its kernels hold. This class holds the
// kernels that allocate nothing anywhere; one subclass per planned device
// holds the rest: engine/meta/cpu_plan.cpp (kMeta) and
// engine/meta/cuda_plan.cpp (kMetaCuda).
#pragma once
#include "engine/backend.h"
#include "engine/error.h"
#include "engine/tensor.h"

namespace mp {

class MetaBackend : public Backend {
 public:
  explicit MetaBackend(Device device) : device_(device) {}
  Device device() const override { return device_; }

  void copy_from_host(void*, const void*, size_t) override {}
  void copy_to_host(void*, const void*, size_t) override {
    fail("the meta device holds shapes only: there are no values to copy to the host");
  }

  void copy(const Tensor&, const Tensor&) override {}
  void fill(const Tensor&, double) override {}
  void random(const Tensor&, Distribution, double, double, uint64_t) override {}
  void binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&) override {}
  void unary(UnaryOp, const Tensor&, const Tensor&) override {}
  void unary_backward(UnaryOp, const Tensor&, const Tensor&, const Tensor&) override {}
  void axpby(float, const Tensor&, float, const Tensor&) override {}
  void arange(const Tensor&, int64_t) override {}
  void mask_positions(const Tensor&, int64_t, const Tensor&) override {}
  void clip_by_norm(const Tensor&, const Tensor&, double, double) override {}
  void reduce(ReduceOp, const Tensor&, int, const Tensor&) override {}
  void add_sum_of_squares(const Tensor&, const Tensor&) override {}

  void softmax(const Tensor&, const Tensor&, bool) override {}
  void softmax_backward(const Tensor&, const Tensor&, const Tensor&, bool) override {}
  void layer_norm(const Tensor&, const Tensor&, const Tensor&, float, const Tensor&, const Tensor&,
                  const Tensor&) override {}
  void layer_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const Tensor&, const Tensor&) override {}
  void embedding(const Tensor&, const Tensor&, const Tensor&) override {}
  void embedding_backward(const Tensor&, const Tensor&, const Tensor&, int) override {}
  void cross_entropy(const Tensor&, const Tensor&, int, const Tensor&, const Tensor&) override {}
  void cross_entropy_backward(const Tensor&, const Tensor&, const Tensor&, int, const Tensor&, const Tensor&) override {}
  void inverse_target_count(const Tensor&, int, const Tensor&) override {}
  void dropout(const Tensor&, float, uint64_t, uint64_t, const Tensor&) override {}
  void adamw(const Tensor&, const Tensor&, const Tensor&, const Tensor&, float, float, float, float, float,
             int64_t) override {}
  void nf4_dequantize(const Nf4Tensor&, const Tensor&) override {}

 private:
  Device device_;
};

// The meta backend planning a device of the given type (kMeta's: cpu; kMetaCuda's: cuda).
Backend* cpu_plan_backend();   // engine/meta/cpu_plan.cpp
Backend* cuda_plan_backend();  // engine/meta/cuda_plan.cpp

}  // namespace mp
