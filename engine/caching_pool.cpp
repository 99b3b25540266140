#include "engine/caching_pool.h"

#include "engine/error.h"

namespace mp {

void* CachingPool::allocate(size_t bytes, Tag tag) {
  const size_t size = round_size(bytes);
  std::lock_guard lock(mutex_);
  void* p = free_.take(size);
  if (!p) {
    p = source_.allocate(size);
    if (!p) {
      release_locked();  // give the cache back to the device and try once more
      p = source_.allocate(size);
    }
    if (!p)
      fail("out of {} memory allocating {} bytes for {} ({} bytes in use)", device_.str(), bytes, tag_name(tag), live_);
    Ledger::instance().on_reserve(device_, size);
  }
  live_ += size;
  return p;
}

void CachingPool::deallocate(void* p, size_t bytes) {
  const size_t size = round_size(bytes);
  std::lock_guard lock(mutex_);
  live_ -= size;
  free_.put(p, size, bytes);
}

void CachingPool::release_cached() {
  std::lock_guard lock(mutex_);
  release_locked();
}

size_t CachingPool::cached_bytes() const {
  std::lock_guard lock(mutex_);
  return free_.bytes();
}

void CachingPool::release_locked() {
  std::vector<void*> blocks;
  for (const auto& [p, size] : free_.evict_all()) {
    blocks.push_back(p);
    Ledger::instance().on_unreserve(device_, size);
  }
  source_.release(blocks);
}

}  // namespace mp
