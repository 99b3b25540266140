#include "engine/block_pool.h"

#include <algorithm>

#include "engine/error.h"
#include "engine/memory.h"

namespace mp {

BlockPool::~BlockPool() {
  for (const auto& [p, size] : free_.blocks()) source_.unmap(p, size);
}

void* BlockPool::allocate(size_t bytes) {
  const size_t size = block_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* p = pooled(bytes) ? free_.take(size) : nullptr;
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
  free_.put(p, size, bytes);
}

void BlockPool::release_cached() {
  std::lock_guard<std::mutex> lock(mutex_);
  evict_down_to(0);
  high_water_ = live_;
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

void BlockPool::evict_down_to(size_t keep) {
  while (free_.bytes() > keep) {
    const auto [p, size] = free_.evict(free_.bytes() - keep);
    source_.unmap(p, size);
    Ledger::instance().on_unreserve(device_, size);
  }
}

}  // namespace mp
