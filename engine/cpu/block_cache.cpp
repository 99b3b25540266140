#include "engine/cpu/block_cache.h"

#include <cstdlib>

#include <sys/mman.h>

#include "engine/error.h"

namespace mp::cpu {

BlockCache::BlockCache() {
  const char* env = std::getenv("MP_CPU_CACHE_MB");
  if (env) max_cached_ = size_t(std::strtoull(env, nullptr, 10)) << 20;
}

BlockCache::~BlockCache() {
  for (auto& [size, blocks] : free_)
    for (void* p : blocks) std::free(p);
}

void* BlockCache::allocate(size_t bytes) {
  if (bytes < kLarge) {
    constexpr size_t kAlign = 64;  // aligned_alloc wants the size to be a multiple of the alignment
    size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
    void* p = std::aligned_alloc(kAlign, rounded == 0 ? kAlign : rounded);
    if (!p) fail("out of host memory allocating {} bytes", bytes);
    return p;
  }
  const size_t size = round_large(bytes);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_ -= size;
      return p;
    }
  }
  // posix_memalign, not aligned_alloc: the size is a multiple of 64 KiB,
  // not of the 2 MiB alignment, which aligned_alloc requires (ASan checks).
  void* p = huge_aligned(size);
  if (!p) {
    release_all();  // the cache may hold what this request needs
    p = huge_aligned(size);
  }
  if (!p) fail("out of host memory allocating {} bytes", bytes);
#ifdef MADV_HUGEPAGE
  madvise(p, size, MADV_HUGEPAGE);  // advice only: ignore failure
#endif
  return p;
}

void BlockCache::deallocate(void* p, size_t bytes) {
  if (bytes < kLarge) {
    std::free(p);
    return;
  }
  const size_t size = round_large(bytes);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_ + size <= max_cached_) {
      free_[size].push_back(p);
      cached_ += size;
      return;
    }
  }
  std::free(p);
}

void BlockCache::release_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [size, blocks] : free_)
    for (void* p : blocks) std::free(p);
  free_.clear();
  cached_ = 0;
}

}  // namespace mp::cpu
