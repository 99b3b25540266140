#include "engine/cpu/block_cache.h"

#include <cstdint>
#include <cstdlib>

#include <sys/mman.h>

#include "engine/error.h"

namespace mp::cpu {

namespace {

constexpr size_t kHugePage = size_t(2) << 20;  // alignment of large blocks

// `size` bytes (a multiple of the page size) at a 2 MiB boundary: map
// 2 MiB more and unmap what lies before and after the aligned block.
void* map_huge_aligned(size_t size) {
  void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = uintptr_t(raw), aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > start) munmap(raw, aligned - start);
  const size_t tail = start + size + kHugePage - (aligned + size);
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + size), tail);
  void* p = reinterpret_cast<void*>(aligned);
#ifdef MADV_HUGEPAGE
  madvise(p, size, MADV_HUGEPAGE);  // advice only: ignore failure
#endif
  return p;
}

void unmap(void* p, size_t size) { munmap(p, size); }

}  // namespace

BlockCache::BlockCache() : large_(kCPU, map_huge_aligned, unmap) {}

void* BlockCache::allocate(size_t bytes) {
  if (BlockPool::pooled(bytes)) return large_.allocate(bytes);
  constexpr size_t kAlign = 64;  // aligned_alloc wants the size to be a multiple of the alignment
  size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, rounded == 0 ? kAlign : rounded);
  if (!p) fail("out of host memory allocating {} bytes", bytes);
  return p;
}

void BlockCache::deallocate(void* p, size_t bytes) {
  if (BlockPool::pooled(bytes)) large_.deallocate(p, bytes);
  else std::free(p);
}

}  // namespace mp::cpu
