// The policy of the host allocator's cache of large blocks, apart from where
// the bytes come from, so that the CPU backend (mmap) and the meta backend
// (no bytes) run the same one and the memory planner predicts its footprint.
//
// A training step frees and re-allocates the same sizes every step
// (activations, gradients, the (B*T, V) logits), and fresh pages from the OS
// cost a page fault and a zeroing pass each on first touch. So a freed large
// block is kept, by size, and handed to the next request of that size. What
// the cache holds is bounded: live + cached never exceeds the highest live
// total since the last release_cached() (the high-water mark). A request the
// cache cannot serve first returns cached blocks to the OS until the new block
// fits under that mark (or the mark rises with the live bytes), so the
// cache's footprint at its peak is the live peak: reserved = allocated at the
// peak, as the GPU allocators report it. The cached blocks are in the Ledger
// under Tag::cached with the bytes their tensors had (the Ledger counts what
// tensors ask for, not the 64 KiB rounding), so that freeing a tensor moves
// its bytes from its tag to cached and never raises the peak.
#pragma once
#include <cstddef>
#include <map>
#include <mutex>
#include <vector>

#include "engine/device.h"

namespace mp {

class BlockPool {
 public:
  using MapFn = void* (*)(size_t bytes);  // a new block (nullptr when out of memory)
  using UnmapFn = void (*)(void* p, size_t bytes);
  BlockPool(Device device, MapFn map, UnmapFn unmap) : device_(device), map_(map), unmap_(unmap) {}
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // Blocks from 1 MiB up are pooled; smaller ones are the caller's (malloc).
  static bool pooled(size_t bytes) { return bytes >= kLarge; }
  // What a pooled request of `bytes` holds: rounded up to 64 KiB.
  static size_t block_size(size_t bytes) { return (bytes + kGranule - 1) / kGranule * kGranule; }

  void* allocate(size_t bytes);  // bytes: pooled(bytes)
  void deallocate(void* p, size_t bytes);
  // Return every cached block to the OS; the high-water mark drops to the live bytes.
  void release_cached();

  size_t cached_bytes() const { return cached_; }
  size_t live_bytes() const { return live_; }

 private:
  static constexpr size_t kLarge = size_t(1) << 20;
  static constexpr size_t kGranule = size_t(64) << 10;

  // Unmap cached blocks until at most `keep` bytes stay cached (mutex held).
  void evict_down_to(size_t keep);
  struct Cached {
    void* p;
    size_t ledgered;  // the bytes of the tensor that held it
  };
  using Bins = std::map<size_t, std::vector<Cached>>;  // block size -> cached blocks of exactly that size
  void unmap_one(Bins::iterator bin);

  Device device_;
  MapFn map_;
  UnmapFn unmap_;
  std::mutex mutex_;
  Bins free_;
  size_t cached_ = 0, live_ = 0;               // bytes of blocks (rounded sizes)
  size_t high_water_ = 0;                      // the most live + cached may reach
};

}  // namespace mp
