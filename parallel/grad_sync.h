// Data-parallel gradient averaging, as PyTorch DDP's reducer does it: the
// trainable parameters' gradients go in buckets of about `bucket_bytes`,
// taken in reverse order of the parameter list (the order backward
// completes them: the last layer first). A bucket's all-reduce starts as
// soon as all its gradients are final, while the rest of backward runs (the
// gradients move into the bucket and stay there as views, as PyTorch DDP's
// gradient_as_bucket_view); finish() waits and leaves every gradient the
// mean over the ranks.
// Frozen parameters have no gradient and are never sent.
//
//   GradSync sync(comm, opt.params());
//   loss.backward([&](const ag::VarImpl& leaf) { sync.grad_final(leaf); });
//   sync.finish();  // then clip and step as in one process
#pragma once
#include <cstddef>
#include <memory>
#include <unordered_map>
#include <vector>

#include "parallel/communicator.h"
#include "nn/module.h"

namespace mp::parallel {

class GradSync {
 public:
  // overlap = false: every bucket starts in finish() (activation recompute:
  // its nested sweeps add to leaves after the outer sweep's hook would fire).
  GradSync(Communicator& comm, const std::vector<nn::NamedParameter>& params, bool overlap = true,
           size_t bucket_bytes = size_t(25) << 20);
  // `leaf`'s gradient is final (ag::Variable::backward's hook). Leaves that
  // are not among the parameters are ignored.
  void grad_final(const ag::VarImpl& leaf);
  // Start the buckets not started yet (their gradients are final now), wait
  // for all, and divide by the number of ranks.
  void finish();

  size_t bytes_per_step() const { return bytes_per_step_; }  // every trainable gradient, once (f32)
  size_t bucket_count() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_, in the order backward completes them
    int64_t numel = 0;
    size_t waiting = 0;          // gradients not final yet this step
    Tensor buffer;               // (numel) f32 under Tag::grads, while in flight
    std::unique_ptr<Pending> pending;
  };
  void start(Bucket& b);

  Communicator& comm_;
  bool overlap_;
  std::vector<ag::Variable> params_;
  std::vector<size_t> bucket_of_;  // per parameter
  std::unordered_map<const ag::VarImpl*, size_t> index_;
  std::vector<Bucket> buckets_;
  size_t bytes_per_step_ = 0;
};

}  // namespace mp::parallel
