// Freed blocks kept by size until a request of that size takes one: the cache
// both allocators keep (engine/block_pool.h on the host, engine/caching_pool.h
// on CUDA), which differ only in how they round sizes and when they give
// blocks back. A cached block is in the Ledger under Tag::cached with the
// bytes of the tensor that last held it, so that freeing a tensor moves its
// bytes from its tag to cached and never raises the peak. Not thread-safe:
// each pool holds its own lock around it.
#pragma once
#include <cstddef>
#include <map>
#include <utility>
#include <vector>

#include "engine/device.h"

namespace mp {

class CachedBins {
 public:
  explicit CachedBins(Device device) : device_(device) {}

  // Keep block p of `size` bytes, freed by a tensor of `bytes`.
  void put(void* p, size_t size, size_t bytes);
  // A cached block of exactly `size` bytes, or nullptr.
  void* take(size_t size);
  // Take a block out to give back: the smallest that alone frees at least
  // `need` bytes, else the largest (fewest blocks returned). {p, size}; not empty().
  std::pair<void*, size_t> evict(size_t need);
  // Every cached block taken out to give back, {p, size} each.
  std::vector<std::pair<void*, size_t>> evict_all();
  // The cached blocks, {p, size} each, left in place (and in the Ledger).
  std::vector<std::pair<void*, size_t>> blocks() const;

  size_t bytes() const { return bytes_; }  // of the cached blocks
  bool empty() const { return bins_.empty(); }

 private:
  struct Cached {
    void* p;
    size_t ledgered;  // the bytes of the tensor that held it
  };
  using Bins = std::map<size_t, std::vector<Cached>>;  // block size -> cached blocks of exactly that size
  std::pair<void*, size_t> take_from(Bins::iterator bin);  // a bin is erased when it empties

  Device device_;
  Bins bins_;
  size_t bytes_ = 0;
};

}  // namespace mp
