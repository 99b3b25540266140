#include "parallel/host_staging.h"

#include <algorithm>

namespace mp::parallel {

Tensor HostStaging::take(const Tensor& t, bool copy_in) {
  if (t.device().is_cpu()) return t;
  auto fits = [&](const Tensor& b) { return b.dtype() == t.dtype() && b.numel() == t.numel(); };
  auto it = std::find_if(free_.begin(), free_.end(), fits);
  Tensor buffer;
  if (it != free_.end()) {
    buffer = *it;
    free_.erase(it);
  } else {
    buffer = Tensor::empty({t.numel()}, t.dtype(), kCPU, Tag::workspace);  // (numel)
  }
  Tensor host = buffer.view(t.shape());
  if (copy_in) host.copy_from(t);
  return host;
}

void HostStaging::give_back(const Tensor& host, const Tensor& t, bool copy_out) {
  if (t.device().is_cpu()) return;
  if (copy_out) Tensor(t).copy_from(host);
  free_.push_back(host.view({host.numel()}));
}

}  // namespace mp::parallel
