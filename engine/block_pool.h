// The policy of the host allocator, apart from where the bytes come from, so
// that the CPU backend (mmap, malloc) and the meta backend (no bytes) run
// the same one and the memory planner predicts its footprint.
//
// A training step frees and re-allocates the same sizes every step
// (activations, gradients, the (B*T, V) logits), and fresh pages from the OS
// cost a page fault and a zeroing pass each on first touch. So a freed large
// block (64 KiB and up) is kept, by size, and handed to the next request of
// that size; small blocks come from malloc and go back to it. (The cut is
// below malloc's own mmap threshold: malloc keeps the larger blocks it maps
// in its heap once freed, out of anyone's account.) What the cache holds is
// bounded: live + cached bytes (small blocks included) never exceed the
// highest live total since the last release_cached() (the high-water mark)
// plus a quarter of it (the slack). An allocation the cache does not serve
// first returns cached blocks to the OS until it fits under that bound (or
// the mark rises with the live bytes). The slack is for full fine-tuning:
// within a step the same bytes change role (activations in the forward,
// gradients in the backward, sizes that differ), and without it the pool
// unmaps one role's blocks to make room for the other's every step (53,000
// more page faults a step at GPT-2 124M B=4 T=128, docs/benchmarks.md).
// The cached blocks are in the Ledger under
// Tag::cached with the bytes their tensors had (engine/cached_bins.h; the
// Ledger counts what tensors ask for, not the rounding to pages). The blocks
// themselves, live and cached, are the device's reserved bytes in the Ledger.
#pragma once
#include <cstddef>
#include <mutex>

#include "engine/cached_bins.h"
#include "engine/device.h"

namespace mp {

// Where a pool's bytes come from; each function returns nullptr when out of memory.
struct BlockSource {
  void* (*map)(size_t size);  // a large block (size: a multiple of 4 KiB)
  void (*unmap)(void* p, size_t size);
  void* (*small)(size_t bytes);  // a block under 64 KiB
  void (*free_small)(void* p);
};

class BlockPool {
 public:
  BlockPool(Device device, BlockSource source) : device_(device), source_(source), free_(device) {}
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // Blocks from 64 KiB up are cached; a request of `bytes` holds block_size(bytes):
  // pages under 1 MiB, 64 KiB granules from there (sizes a little apart share blocks).
  static bool pooled(size_t bytes) { return bytes >= kLarge; }
  static size_t block_size(size_t bytes) {
    if (!pooled(bytes)) return bytes;
    const size_t granule = bytes < kMiB ? kPage : kGranule;
    return (bytes + granule - 1) / granule * granule;
  }

  void* allocate(size_t bytes);
  void deallocate(void* p, size_t bytes);
  // Return every cached block to the OS; the high-water mark drops to the live bytes.
  void release_cached();

  size_t cached_bytes() const { return free_.bytes(); }
  size_t live_bytes() const { return live_; }

 private:
  static constexpr size_t kPage = size_t(4) << 10, kGranule = size_t(64) << 10, kMiB = size_t(1) << 20;
  static constexpr size_t kLarge = kGranule;
  static constexpr size_t kSlackDivisor = 4;  // the slack: a quarter of the mark

  void make_room(size_t size);  // for a new block: the mark rises or cached blocks go
  void* new_block(size_t size, size_t bytes);
  void evict_down_to(size_t keep);  // unmap cached blocks until at most `keep` bytes stay

  Device device_;
  BlockSource source_;
  std::mutex mutex_;
  CachedBins free_;
  size_t live_ = 0;               // bytes of live blocks (block_size)
  size_t high_water_ = 0;         // the highest live total: live + cached stay within it plus the slack
};

}  // namespace mp
