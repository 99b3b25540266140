// The large-block pool (engine/block_pool.h): reuse by size, the footprint
// bounded by the high-water mark of the live bytes plus a quarter of it
// (small blocks included), Tag::cached in the Ledger.
#include <doctest/doctest.h>

#include <cstdlib>
#include <set>

#include "engine/block_pool.h"
#include "engine/memory.h"

using namespace mp;

namespace {

constexpr size_t MiB = size_t(1) << 20;

// A fake OS: hands out distinct addresses and counts what is mapped.
struct FakeOs {
  static inline size_t mapped = 0, maps = 0, next = 0x10000000;
  static inline std::set<void*> blocks;
  static void* map(size_t size) {
    mapped += size, ++maps;
    void* p = reinterpret_cast<void*>(next += 0x10000000);
    blocks.insert(p);
    return p;
  }
  static void unmap(void* p, size_t size) {
    REQUIRE(blocks.erase(p) == 1);
    mapped -= size;
  }
  static constexpr BlockSource source{map, unmap, std::malloc, std::free};
};

// The pool ledgers under kMeta here: the meta backend's own pool does too,
// and nothing else runs on meta in this test.
size_t ledgered_cached() { return Ledger::instance().current(Tag::cached, kMeta); }

}  // namespace

TEST_CASE("a freed large block is reused for the same size, and ledgered as cached meanwhile") {
  const size_t cached0 = ledgered_cached();
  BlockPool pool(kMeta, FakeOs::source);
  CHECK_FALSE(BlockPool::pooled(64 * 1024 - 1));
  CHECK(BlockPool::block_size(64 * 1024 + 1) == 68 * 1024);  // pages
  CHECK(BlockPool::block_size(MiB + 1) == MiB + 64 * 1024);  // 64 KiB granules
  void* a = pool.allocate(3 * MiB);
  const size_t maps = FakeOs::maps;
  pool.deallocate(a, 3 * MiB);
  CHECK(pool.cached_bytes() == 3 * MiB);
  CHECK(ledgered_cached() == cached0 + 3 * MiB);
  CHECK(pool.allocate(3 * MiB) == a);  // no new mapping
  CHECK(FakeOs::maps == maps);
  CHECK(ledgered_cached() == cached0);
  pool.deallocate(a, 3 * MiB);
  pool.release_cached();
  CHECK(pool.cached_bytes() == 0);
  CHECK(ledgered_cached() == cached0);
  CHECK(FakeOs::blocks.empty());
}

TEST_CASE("live + cached never exceeds the highest live total and a quarter: a miss returns cached blocks first") {
  const size_t mapped0 = FakeOs::mapped;
  BlockPool pool(kMeta, FakeOs::source);
  void* a = pool.allocate(4 * MiB);
  void* b = pool.allocate(2 * MiB);  // live 6 MiB: the high-water mark; the bound 7.5 MiB
  pool.deallocate(a, 4 * MiB);
  pool.deallocate(b, 2 * MiB);
  CHECK(pool.cached_bytes() == 6 * MiB);
  // 3 MiB is no cached size; 3 live + 6 cached > 7.5: the smallest cached
  // block that makes room (2 MiB) goes.
  void* c = pool.allocate(3 * MiB);
  CHECK(pool.cached_bytes() == 4 * MiB);
  CHECK(FakeOs::mapped - mapped0 == 7 * MiB);
  // 8 MiB: the live bytes rise to 11 MiB (the bound 13.75), and the cached 4 MiB go.
  void* d = pool.allocate(8 * MiB);
  CHECK(pool.cached_bytes() == 0);
  CHECK(FakeOs::mapped - mapped0 == 11 * MiB);
  CHECK(pool.live_bytes() == 11 * MiB);
  pool.deallocate(c, 3 * MiB);
  pool.deallocate(d, 8 * MiB);
  pool.release_cached();
  CHECK(FakeOs::mapped == mapped0);
}

TEST_CASE("release_cached lowers the mark to the live bytes") {
  BlockPool pool(kMeta, FakeOs::source);
  void* a = pool.allocate(8 * MiB);
  pool.deallocate(a, 8 * MiB);
  pool.release_cached();  // the mark: 0
  void* b = pool.allocate(2 * MiB);
  pool.deallocate(b, 2 * MiB);
  void* c = pool.allocate(4 * MiB);  // the mark 4 MiB, the bound 5: the cached 2 MiB go
  CHECK(pool.cached_bytes() == 0);
  pool.deallocate(c, 4 * MiB);
  pool.release_cached();
  CHECK(FakeOs::blocks.empty());
}

TEST_CASE("the slack keeps one role's blocks while another size is live; a small block counts toward the bound") {
  BlockPool pool(kMeta, FakeOs::source);
  void* a = pool.allocate(4 * MiB);
  pool.deallocate(a, 4 * MiB);  // the mark: 4 MiB, all of it cached; the bound 5 MiB
  void* b = pool.allocate(MiB);  // 1 live + 4 cached: within the slack, nothing unmapped
  CHECK(pool.cached_bytes() == 4 * MiB);
  CHECK(FakeOs::blocks.size() == 2);
  void* s = pool.allocate(32 * 1024);  // over the bound: the cached 4 MiB go
  CHECK(pool.cached_bytes() == 0);
  CHECK(pool.live_bytes() == MiB + 32 * 1024);
  pool.deallocate(s, 32 * 1024);
  CHECK(pool.cached_bytes() == 0);  // small blocks go back to malloc
  pool.deallocate(b, MiB);
  pool.release_cached();
  CHECK(FakeOs::blocks.empty());
}
