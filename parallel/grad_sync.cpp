#include "parallel/grad_sync.h"

#include "engine/error.h"
#include "engine/ops.h"

namespace mp::parallel {

GradSync::GradSync(Communicator& comm, const std::vector<nn::NamedParameter>& params, bool overlap,
                   size_t bucket_bytes)
    : comm_(comm), overlap_(overlap) {
  for (const auto& [name, p] : params) {
    if (!p.requires_grad()) continue;
    if (p.value().dtype() != DType::f32) fail("data parallel: parameter '{}' is {}, not f32", name, dtype_name(p.value().dtype()));
    index_[p.impl().get()] = params_.size();
    params_.push_back(p);
  }
  bucket_of_.resize(params_.size());
  for (size_t k = params_.size(); k-- > 0;) {  // the last layer first
    const size_t bytes = size_t(params_[k].value().numel()) * 4;
    if (buckets_.empty() || (buckets_.back().numel * 4 + bytes > bucket_bytes && !buckets_.back().params.empty()))
      buckets_.emplace_back();
    Bucket& b = buckets_.back();
    b.params.push_back(k);
    b.numel += params_[k].value().numel();
    bucket_of_[k] = buckets_.size() - 1;
    bytes_per_step_ += bytes;
  }
  for (Bucket& b : buckets_) b.waiting = b.params.size();
}

void GradSync::grad_final(const ag::VarImpl& leaf) {
  auto it = index_.find(&leaf);
  if (!overlap_ || it == index_.end()) return;
  Bucket& b = buckets_[bucket_of_[it->second]];
  if (b.waiting > 0 && --b.waiting == 0) start(b);
  comm_.progress();
}

// Move the gradients into one buffer and start its all-reduce: each
// gradient becomes a view of its part of the buffer (its own bytes are
// freed), so the buckets cost no second copy of the gradients. A parameter
// without a gradient (unused this step, the same on every rank) sends zeros.
// A bucket of one parameter (one larger than a bucket: the embedding) is its
// gradient itself: no copy, and no second copy of it alive at once.
void GradSync::start(Bucket& b) {
  b.waiting = 0;
  const ag::Variable& first = params_[b.params[0]];
  if (b.params.size() == 1 && first.grad().defined() && first.grad().is_contiguous()) {
    b.buffer = first.grad().view({b.numel});
    b.pending = comm_.all_reduce_sum(b.buffer);
    return;
  }
  b.buffer = Tensor::zeros({b.numel}, DType::f32, params_[b.params[0]].value().device(), Tag::grads);  // (numel)
  int64_t at = 0;
  for (size_t k : b.params) {
    const ag::Variable& p = params_[k];
    const int64_t n = p.value().numel();
    if (p.grad().defined()) {
      Tensor part = b.buffer.narrow(0, at, n);
      part.copy_from(p.grad().reshape({n}));
      p.impl()->grad = part.view(p.shape());
    }
    at += n;
  }
  b.pending = comm_.all_reduce_sum(b.buffer);
}

void GradSync::finish() {
  for (Bucket& b : buckets_)
    if (!b.pending) start(b);
  const float inverse = 1.f / float(comm_.size());
  for (Bucket& b : buckets_) {
    b.pending->wait();
    ops::axpby(inverse, b.buffer, 0.f, b.buffer);  // the sum over ranks -> the mean, in the gradients' views
    b.pending.reset();
    b.buffer = Tensor();  // the gradients' views keep it until the optimizer drops them
    b.waiting = b.params.size();
  }
}

}  // namespace mp::parallel
