#include "train/data/batch.h"

#include "engine/error.h"

namespace mp::train {

int64_t Batch::targets() const {
  const int64_t B = ids.size(0), T = ids.size(1);
  if (!labels.defined()) return B * std::max<int64_t>(T - 1, 0);
  Tensor l = labels.to(kCPU).contiguous();  // (B, T)
  const int32_t* v = l.data<int32_t>();
  int64_t count = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 1; t < T; ++t) count += v[b * T + t] != -100;
  return count;
}

// f applied to each defined tensor of b.
template <class F>
static Batch each_tensor(const Batch& b, F f) {
  auto g = [&](const Tensor& t) { return t.defined() ? f(t) : t; };
  Batch out;
  out.ids = g(b.ids);
  out.labels = g(b.labels);
  out.attention_mask = g(b.attention_mask);
  out.position_ids = g(b.position_ids);
  out.segment_ids = g(b.segment_ids);
  return out;
}

Batch Batch::rows(nn::BatchRows part) const {
  if (part.count == 0) return *this;
  const int64_t B = ids.size(0);
  if (part.first < 0 || part.first + part.count > B) fail("rows [{}, +{}) of a batch of {}", part.first, part.count, B);
  return each_tensor(*this, [&](const Tensor& t) { return t.narrow(0, part.first, part.count).contiguous(); });
}

Batch Batch::to(Device d) const {
  return each_tensor(*this, [&](const Tensor& t) { return t.to(d); });
}

}  // namespace mp::train
