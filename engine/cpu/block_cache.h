// The CPU backend's host memory allocator.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

namespace mp::cpu {

// Host memory for tensors. Small blocks: 64-byte aligned (a cache line, an
// AVX-512 vector) from malloc. Large blocks (>= 1 MiB) are what a training
// step churns through: every step frees and re-allocates the same sizes
// (activations, gradients, the (B*T, V) logits), and fresh pages from the OS
// cost a page fault and a zeroing pass each on first touch. So a freed large
// block is kept, by size, and handed to the next request of that size; the
// cache holds at most 2 GiB (MP_CPU_CACHE_MB overrides), beyond
// which freed blocks go back to the OS. Large blocks are 2 MiB aligned and
// marked MADV_HUGEPAGE, so where the kernel allows transparent huge pages
// they fault in 2 MiB at a time and use fewer TLB entries (the 154 MB
// embedding a GEMM streams through). The Ledger (kept by Storage) counts
// live tensors only, not the cache.
class BlockCache {
 public:
  BlockCache();
  ~BlockCache();
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  void* allocate(size_t bytes);
  void deallocate(void* p, size_t bytes);

 private:
  static constexpr size_t kLarge = size_t(1) << 20;      // blocks from here up are cached
  static constexpr size_t kHugePage = size_t(2) << 20;   // alignment of large blocks
  static constexpr size_t kGranule = size_t(64) << 10;   // large sizes round up to this
  static size_t round_large(size_t bytes) { return (bytes + kGranule - 1) / kGranule * kGranule; }
  static void* huge_aligned(size_t size) {
    void* p = nullptr;
    return posix_memalign(&p, kHugePage, size) == 0 ? p : nullptr;
  }

  void release_all();

  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;  // size -> free blocks of exactly that size
  size_t cached_ = 0;
  size_t max_cached_ = size_t(2048) << 20;
};

}  // namespace mp::cpu
