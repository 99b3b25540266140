#include "engine/block_pool.h"

#include <algorithm>

#include "engine/error.h"
#include "engine/memory.h"

namespace mp {

BlockPool::~BlockPool() {
  for (auto& [size, blocks] : free_)
    for (const Cached& b : blocks) unmap_(b.p, size);
}

void* BlockPool::allocate(size_t bytes) {
  const size_t size = block_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = free_.find(size);
  if (it != free_.end()) {  // a bin is erased when it empties
    const Cached b = it->second.back();
    it->second.pop_back();
    if (it->second.empty()) free_.erase(it);
    cached_ -= size;
    live_ += size;
    Ledger::instance().on_free(device_, Tag::cached, b.ledgered);
    return b.p;
  }
  // A miss: the new block must fit under the high-water mark, which rises
  // only when the live bytes themselves go above it.
  high_water_ = std::max(high_water_, live_ + size);
  evict_down_to(high_water_ - live_ - size);
  void* p = map_(size);
  if (!p) {
    evict_down_to(0);  // the cache may hold what this request needs
    p = map_(size);
  }
  if (!p) fail("out of host memory allocating {} bytes", bytes);
  live_ += size;
  return p;
}

void BlockPool::deallocate(void* p, size_t bytes) {
  const size_t size = block_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  free_[size].push_back({p, bytes});
  live_ -= size;
  cached_ += size;
  Ledger::instance().on_alloc(device_, Tag::cached, bytes);
}

void BlockPool::release_cached() {
  std::lock_guard<std::mutex> lock(mutex_);
  evict_down_to(0);
  high_water_ = live_;
}

// The victim: the smallest cached block that alone frees enough, else the
// largest one (fewest blocks returned, and the sizes most often asked for,
// the small ones, stay).
void BlockPool::evict_down_to(size_t keep) {
  while (cached_ > keep) {
    const size_t need = cached_ - keep;
    auto bin = free_.lower_bound(need);
    unmap_one(bin != free_.end() ? bin : std::prev(free_.end()));  // cached_ > 0: free_ is not empty
  }
}

void BlockPool::unmap_one(Bins::iterator bin) {
  const size_t size = bin->first;
  const Cached b = bin->second.back();
  unmap_(b.p, size);
  bin->second.pop_back();
  if (bin->second.empty()) free_.erase(bin);
  cached_ -= size;
  Ledger::instance().on_free(device_, Tag::cached, b.ledgered);
}

}  // namespace mp
