#include "engine/block_pool.h"

#include <algorithm>

#include "engine/error.h"
#include "engine/memory.h"

namespace mp {

BlockPool::~BlockPool() {
  for (auto& [size, blocks] : free_)
    for (const Cached& b : blocks) source_.unmap(b.p, size);
}

void* BlockPool::allocate(size_t bytes) {
  const size_t size = block_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* p = pooled(bytes) ? take_cached(size) : nullptr;
  if (!p) {
    make_room(size);
    p = new_block(size, bytes);
  }
  live_ += size;
  return p;
}

void BlockPool::deallocate(void* p, size_t bytes) {
  const size_t size = block_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  live_ -= size;
  if (!pooled(bytes)) {
    source_.free_small(p);
    Ledger::instance().on_unreserve(device_, size);
    return;
  }
  free_[size].push_back({p, bytes});
  cached_ += size;
  Ledger::instance().on_alloc(device_, Tag::cached, bytes);
}

void BlockPool::release_cached() {
  std::lock_guard<std::mutex> lock(mutex_);
  evict_down_to(0);
  high_water_ = live_;
}

void* BlockPool::take_cached(size_t size) {
  auto it = free_.find(size);
  if (it == free_.end()) return nullptr;  // a bin is erased when it empties
  const Cached b = it->second.back();
  it->second.pop_back();
  if (it->second.empty()) free_.erase(it);
  cached_ -= size;
  Ledger::instance().on_free(device_, Tag::cached, b.ledgered);
  return b.p;
}

void BlockPool::make_room(size_t size) {
  high_water_ = std::max(high_water_, live_ + size);
  evict_down_to(high_water_ + high_water_ / kSlackDivisor - live_ - size);
}

void* BlockPool::new_block(size_t size, size_t bytes) {
  auto get = [&] { return pooled(bytes) ? source_.map(size) : source_.small(bytes); };
  void* p = get();
  if (!p) {
    evict_down_to(0);  // the cache may hold what this request needs
    p = get();
  }
  if (!p) fail("out of host memory allocating {} bytes", bytes);
  Ledger::instance().on_reserve(device_, size);
  return p;
}

// The victim: the smallest cached block that alone frees enough, else the
// largest one (fewest blocks returned).
void BlockPool::evict_down_to(size_t keep) {
  while (cached_ > keep) {
    auto bin = free_.lower_bound(cached_ - keep);
    unmap_one(bin != free_.end() ? bin : std::prev(free_.end()));  // cached_ > 0: free_ is not empty
  }
}

void BlockPool::unmap_one(Bins::iterator bin) {
  const size_t size = bin->first;
  const Cached b = bin->second.back();
  source_.unmap(b.p, size);
  Ledger::instance().on_unreserve(device_, size);
  bin->second.pop_back();
  if (bin->second.empty()) free_.erase(bin);
  cached_ -= size;
  Ledger::instance().on_free(device_, Tag::cached, b.ledgered);
}

}  // namespace mp
