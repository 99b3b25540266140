// The policy of the CUDA backend's allocator, apart from where the bytes come
// from, so that the CUDA backend (cudaMalloc) and the meta backend that plans
// a CUDA run (no bytes: engine/meta/cuda_plan.cpp) run the same one.
//
// A request is rounded up (512-byte steps below 1 MiB, 2 MiB steps above) so
// that a freed block fits later requests of similar size, and a freed block
// is kept in a free list by its rounded size until a request of that size
// takes it. Nothing is given back while the device has memory: when the
// source fails, every cached block is released and the request tried once
// more (PyTorch's caching allocator does the same, without splitting blocks).
// As on the host (engine/block_pool.h), cached blocks are in the Ledger under
// Tag::cached with their tensors' bytes (engine/cached_bins.h), and the blocks
// themselves, rounded, live and cached, are the device's reserved bytes.
#pragma once
#include <cstddef>
#include <mutex>
#include <vector>

#include "engine/cached_bins.h"
#include "engine/device.h"
#include "engine/memory.h"

namespace mp {

// Where a pool's device memory comes from.
struct DeviceMemorySource {
  void* (*allocate)(size_t size);  // nullptr when the device is out of memory
  // Give the blocks back; may throw an mp::Error after trying every block.
  void (*release)(const std::vector<void*>& blocks);
};

class CachingPool {
 public:
  CachingPool(Device device, DeviceMemorySource source) : device_(device), source_(source), free_(device) {}
  CachingPool(const CachingPool&) = delete;
  CachingPool& operator=(const CachingPool&) = delete;

  static size_t round_size(size_t bytes) {
    if (bytes < kMiB) return (std::max<size_t>(bytes, 1) + kSmall - 1) / kSmall * kSmall;
    return (bytes + kLarge - 1) / kLarge * kLarge;
  }

  // A block of round_size(bytes) for a tensor of `bytes` with `tag` (named
  // in the out-of-memory error).
  void* allocate(size_t bytes, Tag tag);
  void deallocate(void* p, size_t bytes);
  // Give every cached block back to the source.
  void release_cached();

  size_t cached_bytes() const;

 private:
  static constexpr size_t kSmall = 512, kLarge = size_t(2) << 20, kMiB = size_t(1) << 20;
  void release_locked();

  Device device_;
  DeviceMemorySource source_;
  mutable std::mutex mutex_;
  CachedBins free_;
  size_t live_ = 0;  // bytes of live blocks (rounded)
};

}  // namespace mp
