// Host buffers for a collective library that reads host memory only (MPI)
// handed tensors on a device host code may not read (sim, CUDA): each
// collective copies its input into a host buffer once and its result back
// once (Tensor::copy_from: each counted by host_transfers()). The buffers
// are kept, under Tag::workspace on the CPU, and the next collective of the
// same dtype and size reuses one: a training step's buckets allocate no new
// host memory after the first step.
//
//   Tensor host = staging.take(grads, true);   // (n) on the CPU, grads' values
//   ... the collective sums `host` in place ...
//   staging.give_back(host, grads, true);      // grads = host; buffer kept
//
// A CPU tensor is its own buffer: no copy either way.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace mp::parallel {

class HostStaging {
 public:
  // A contiguous host tensor shaped like `t` for one collective: `t` itself
  // on the CPU, else a free buffer (a new one if none fits), holding `t`'s
  // values when `copy_in` (an output-only buffer needs none).
  Tensor take(const Tensor& t, bool copy_in);
  // The collective is done with `host` (from take(t, ...)): its values into
  // `t` when `copy_out`, and the buffer free for the next take.
  void give_back(const Tensor& host, const Tensor& t, bool copy_out);

  size_t buffers() const { return free_.size(); }  // free now (all, between collectives)

 private:
  std::vector<Tensor> free_;  // (numel) each
};

}  // namespace mp::parallel
