// Planning the CUDA backend without a GPU: its caching allocator's policy
// (engine/caching_pool.h) over a fake device, and the workspace its kernels
// hold, run on the meta device that plans it (kMetaCuda). The expected bytes
// are derived by hand from what the CUDA backend allocates (cuda/cuda_backend.cpp
// through engine/device_steps.h); on a GPU, bench/gpu_check.sh holds the plan
// equal to the GPU's ledger.
#include <doctest/doctest.h>

#include <map>
#include <vector>

#include "engine/caching_pool.h"
#include "engine/error.h"
#include "engine/nf4.h"
#include "engine/ops.h"

using namespace mp;

namespace {

constexpr size_t MiB = size_t(1) << 20;

// A fake GPU of `capacity` bytes: hands out distinct addresses, fails past its capacity.
struct FakeGpu {
  static inline size_t used = 0, capacity = 0, allocations = 0, next = 0x10000000;
  static inline std::map<void*, size_t> blocks;
  static void* allocate(size_t size) {
    if (used + size > capacity) return nullptr;
    used += size, ++allocations;
    void* p = reinterpret_cast<void*>(next += 0x10000000);
    blocks[p] = size;
    return p;
  }
  static void release(const std::vector<void*>& released) {
    for (void* p : released) {
      REQUIRE(blocks.count(p) == 1);
      used -= blocks[p];
      blocks.erase(p);
    }
  }
};
constexpr DeviceMemorySource kFakeGpu{FakeGpu::allocate, FakeGpu::release};

// The bytes a tag reached on kMetaCuda during f(), above what was there before.
template <class F>
size_t workspace_peak(F f) {
  Ledger& ledger = Ledger::instance();
  const size_t before = ledger.current(Tag::workspace, kMetaCuda);
  ledger.reset_peaks();
  f();
  return ledger.peak(Tag::workspace, kMetaCuda) - before;
}

}  // namespace

TEST_CASE("the CUDA allocator's policy: rounded blocks, reused by rounded size, reserved and cached in the Ledger") {
  CHECK(CachingPool::round_size(0) == 512);
  CHECK(CachingPool::round_size(1) == 512);
  CHECK(CachingPool::round_size(513) == 1024);
  CHECK(CachingPool::round_size(MiB - 1) == MiB);  // 512 B steps below 1 MiB
  CHECK(CachingPool::round_size(MiB) == 2 * MiB);  // 2 MiB steps from there
  CHECK(CachingPool::round_size(2 * MiB + 1) == 4 * MiB);

  FakeGpu::used = 0;
  FakeGpu::capacity = 1 << 30;
  Ledger& ledger = Ledger::instance();
  const size_t reserved0 = ledger.reserved(kCUDA), cached0 = ledger.current(Tag::cached, kCUDA);
  CachingPool pool(kCUDA, kFakeGpu);
  void* a = pool.allocate(100, Tag::activations);
  CHECK(ledger.reserved(kCUDA) == reserved0 + 512);
  pool.deallocate(a, 100);
  CHECK(ledger.current(Tag::cached, kCUDA) == cached0 + 100);  // the tensor's bytes, as on the host
  CHECK(pool.cached_bytes() == 512);
  const size_t allocations = FakeGpu::allocations;
  CHECK(pool.allocate(300, Tag::grads) == a);  // the same 512 B block: nothing new from the device
  CHECK(FakeGpu::allocations == allocations);
  CHECK(ledger.current(Tag::cached, kCUDA) == cached0);
  void* b = pool.allocate(600, Tag::grads);  // a 1024 B block
  CHECK(b != a);
  CHECK(ledger.reserved(kCUDA) == reserved0 + 512 + 1024);
  pool.deallocate(a, 300);
  pool.deallocate(b, 600);
  CHECK(ledger.reserved(kCUDA) == reserved0 + 1536);  // kept while the device has room
  CHECK(FakeGpu::used == 1536);
  pool.release_cached();
  CHECK(FakeGpu::used == 0);
  CHECK(ledger.reserved(kCUDA) == reserved0);
  CHECK(ledger.current(Tag::cached, kCUDA) == cached0);
  CHECK(pool.cached_bytes() == 0);
}

TEST_CASE("the CUDA allocator's policy: out of memory, the cache is released and the request tried again") {
  FakeGpu::used = 0;
  FakeGpu::capacity = 1536;
  CachingPool pool(kCUDA, kFakeGpu);
  void* a = pool.allocate(512, Tag::activations);
  void* b = pool.allocate(512, Tag::activations);
  pool.deallocate(a, 512);   // cached, still on the device
  void* c = pool.allocate(1000, Tag::weights);  // 1024 B: fits only once the cached block is released
  CHECK(c != nullptr);
  CHECK(pool.cached_bytes() == 0);
  CHECK_THROWS_WITH_AS(pool.allocate(512, Tag::optimizer),
                       doctest::Contains("out of cuda:0 memory allocating 512 bytes for optimizer"), Error);
  pool.deallocate(b, 512);
  pool.deallocate(c, 1000);
  pool.release_cached();
  CHECK(FakeGpu::used == 0);
}

TEST_CASE("planning CUDA: an f32 x bf16 product holds the bf16 operand widened whole, the CPU's plan does not") {
  const Tensor x = Tensor::empty({8, 64}, DType::f32, kMetaCuda);     // (N, K)
  const Tensor w = Tensor::empty({64, 32}, DType::bf16, kMetaCuda);   // (K, O), a frozen bf16 weight
  CHECK(workspace_peak([&] { ops::matmul(x, w); }) == 64 * 32 * 4);
  const Tensor w32 = Tensor::empty({64, 32}, DType::f32, kMetaCuda);
  CHECK(workspace_peak([&] { ops::matmul(x, w32); }) == 0);  // cuBLAS takes f32 as it is
  const Tensor xb = Tensor::empty({8, 64}, DType::bf16, kMetaCuda);
  CHECK(workspace_peak([&] { ops::matmul(xb, w); }) == 0);   // and bf16 with bf16
}

TEST_CASE("planning CUDA: an NF4 product dequantizes the whole weight; attention backward holds its per-query sums") {
  const Tensor w = Tensor::empty({48, 64}, DType::f32, kMetaCuda);  // (O, K)
  const Nf4Tensor q = nf4_quantize(w);
  const Tensor x = Tensor::empty({4, 64}, DType::f32, kMetaCuda);   // (N, K)
  CHECK(workspace_peak([&] { nf4_matmul(x, q, true); }) == 48 * 64 * 4);

  const int64_t B = 2, H = 3, T = 16, D = 8;
  const Tensor qkv = Tensor::empty({B, H, T, D}, DType::f32, kMetaCuda);
  AttentionParams p;
  const ops::AttentionOut a = ops::attention(qkv, qkv, qkv, p);
  CHECK(workspace_peak([&] { ops::attention(qkv, qkv, qkv, p); }) == 0);
  const Tensor g = Tensor::empty({B, H, T, D}, DType::f32, kMetaCuda);
  CHECK(workspace_peak([&] { ops::attention_backward(qkv, qkv, qkv, a.out, a.lse, g, p, g, g, g); }) ==
        size_t(B * H * T) * 4);
}
