// The CPU backend's host memory allocator.
#pragma once
#include <cstddef>

#include "engine/block_pool.h"

namespace mp::cpu {

// Host memory for tensors. Small blocks: 64-byte aligned (a cache line, an
// AVX-512 vector) from malloc. Large blocks (BlockPool::pooled) come from the
// pool (engine/block_pool.h: freed blocks cached by size, bounded by the
// high-water mark of the live bytes, in the Ledger as Tag::cached), which
// maps them here straight from the OS and returns them with munmap, so that
// a block the cache gives up leaves the process's resident memory at once
// (malloc would keep it in its heap). Large blocks are 2 MiB aligned and
// marked MADV_HUGEPAGE, so where the kernel allows transparent huge pages
// they fault in 2 MiB at a time and use fewer TLB entries (the 154 MB
// embedding a GEMM streams through).
class BlockCache {
 public:
  BlockCache();

  void* allocate(size_t bytes);
  void deallocate(void* p, size_t bytes);
  void empty_cache() { large_.release_cached(); }

 private:
  BlockPool large_;
};

}  // namespace mp::cpu
