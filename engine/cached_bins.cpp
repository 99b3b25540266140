#include "engine/cached_bins.h"

#include "engine/memory.h"

namespace mp {

void CachedBins::put(void* p, size_t size, size_t bytes) {
  bins_[size].push_back({p, bytes});
  bytes_ += size;
  Ledger::instance().on_alloc(device_, Tag::cached, bytes);
}

void* CachedBins::take(size_t size) {
  auto bin = bins_.find(size);
  return bin == bins_.end() ? nullptr : take_from(bin).first;
}

std::pair<void*, size_t> CachedBins::evict(size_t need) {
  auto bin = bins_.lower_bound(need);
  return take_from(bin != bins_.end() ? bin : std::prev(bins_.end()));
}

std::vector<std::pair<void*, size_t>> CachedBins::evict_all() {
  std::vector<std::pair<void*, size_t>> out;
  while (!bins_.empty()) out.push_back(take_from(bins_.begin()));
  return out;
}

std::vector<std::pair<void*, size_t>> CachedBins::blocks() const {
  std::vector<std::pair<void*, size_t>> out;
  for (const auto& [size, cached] : bins_)
    for (const Cached& b : cached) out.emplace_back(b.p, size);
  return out;
}

std::pair<void*, size_t> CachedBins::take_from(Bins::iterator bin) {
  const size_t size = bin->first;
  const Cached b = bin->second.back();
  bin->second.pop_back();
  if (bin->second.empty()) bins_.erase(bin);
  bytes_ -= size;
  Ledger::instance().on_free(device_, Tag::cached, b.ledgered);
  return {b.p, size};
}

}  // namespace mp
