#include "engine/caching_pool.h"

#include "engine/error.h"

namespace mp {

void* CachingPool::allocate(size_t bytes, Tag tag) {
  const size_t size = round_size(bytes);
  std::lock_guard lock(mutex_);
  Ledger& ledger = Ledger::instance();
  void* p = nullptr;
  auto it = free_.find(size);
  if (it != free_.end() && !it->second.empty()) {
    const Cached b = it->second.back();
    it->second.pop_back();
    cached_ -= size;
    ledger.on_free(device_, Tag::cached, b.ledgered);
    p = b.p;
  } else {
    p = source_.allocate(size);
    if (!p) {
      release_locked();  // give the cache back to the device and try once more
      p = source_.allocate(size);
    }
    if (!p)
      fail("out of {} memory allocating {} bytes for {} ({} bytes in use)", device_.str(), bytes, tag_name(tag), live_);
    ledger.on_reserve(device_, size);
  }
  live_ += size;
  return p;
}

void CachingPool::deallocate(void* p, size_t bytes) {
  const size_t size = round_size(bytes);
  std::lock_guard lock(mutex_);
  live_ -= size;
  free_[size].push_back({p, bytes});
  cached_ += size;
  Ledger::instance().on_alloc(device_, Tag::cached, bytes);
}

void CachingPool::release_cached() {
  std::lock_guard lock(mutex_);
  release_locked();
}

size_t CachingPool::cached_bytes() const {
  std::lock_guard lock(mutex_);
  return cached_;
}

void CachingPool::release_locked() {
  std::vector<void*> blocks;
  Ledger& ledger = Ledger::instance();
  for (auto& [size, cached] : free_)
    for (const Cached& b : cached) {
      blocks.push_back(b.p);
      ledger.on_free(device_, Tag::cached, b.ledgered);
      ledger.on_unreserve(device_, size);
    }
  free_.clear();
  cached_ = 0;
  source_.release(blocks);
}

}  // namespace mp
