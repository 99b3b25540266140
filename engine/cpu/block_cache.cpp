#include "engine/cpu/block_cache.h"

#include <cstdint>
#include <cstdlib>

#include <sys/mman.h>

namespace mp::cpu {

namespace {

constexpr size_t kHugePage = size_t(2) << 20;  // alignment of large blocks

void* map_pages(size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// `size` bytes (a multiple of the page size); from 2 MiB up at a 2 MiB
// boundary: map 2 MiB more and unmap what lies before and after the block.
void* map_block(size_t size) {
  if (size < kHugePage) return map_pages(size);
  void* raw = map_pages(size + kHugePage);
  if (!raw) return nullptr;
  const uintptr_t start = uintptr_t(raw), aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > start) munmap(raw, aligned - start);
  const size_t tail = start + kHugePage - aligned;  // mapped after the block
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + size), tail);
  void* p = reinterpret_cast<void*>(aligned);
#ifdef MADV_HUGEPAGE
  madvise(p, size, MADV_HUGEPAGE);  // advice only: ignore failure
#endif
  return p;
}

void unmap(void* p, size_t size) { munmap(p, size); }

void* small_block(size_t bytes) {
  constexpr size_t kAlign = 64;  // aligned_alloc wants the size to be a multiple of the alignment
  const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  return std::aligned_alloc(kAlign, rounded == 0 ? kAlign : rounded);
}

}  // namespace

BlockSource host_memory() { return {map_block, unmap, small_block, std::free}; }

}  // namespace mp::cpu
