// The CPU backend: memory is 64-byte aligned host memory, and every kernel is
// forwarded to its family's file (elementwise.cpp, matmul.cpp, ...).
//
// MP_PROFILE=1 in the environment times every kernel call and prints the
// totals per kind of kernel to stderr when the program exits; MP_PROFILE=2
// splits matmul by shape. Kernels are called from one thread (each runs its
// own OpenMP or BLAS threads inside), so the counters need no lock.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include <sys/mman.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/cpu/kernels.h"
#include "engine/error.h"

namespace mp {
namespace cpu {

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

Tensor workspace(const Shape& shape, DType dt) { return Tensor::empty(shape, dt, kCPU, Tag::workspace); }

namespace {

class Profile {
 public:
  static Profile& instance() {
    static Profile p;
    return p;
  }
  int level() const { return level_; }
  void add(const std::string& kind, double seconds) {
    Entry& e = totals_[kind];
    e.seconds += seconds;
    ++e.calls;
  }
  ~Profile() {
    if (level_ == 0 || totals_.empty()) return;
    double all = 0;
    for (const auto& [kind, e] : totals_) all += e.seconds;
    std::multimap<double, std::string, std::greater<>> by_time;
    for (const auto& [kind, e] : totals_) by_time.emplace(e.seconds, kind);
    std::fprintf(stderr, "MP_PROFILE: cpu kernel time by kind (%.3f s in all)\n", all);
    for (const auto& [seconds, kind] : by_time) {
      const Entry& e = totals_[kind];
      std::fprintf(stderr, "  %-44s %9.3f s %5.1f%% %8lld calls\n", kind.c_str(), e.seconds,
                   all > 0 ? 100 * e.seconds / all : 0.0, static_cast<long long>(e.calls));
    }
  }

 private:
  struct Entry {
    double seconds = 0;
    int64_t calls = 0;
  };
  Profile() {
    const char* env = std::getenv("MP_PROFILE");
    level_ = env ? std::atoi(env) : 0;
  }
  int level_ = 0;
  std::map<std::string, Entry> totals_;
};

// Times one kernel call when profiling is on; costs one branch when it is off.
class Timed {
 public:
  explicit Timed(const char* kind) : on_(Profile::instance().level() > 0), kind_(kind) {
    if (on_) t0_ = std::chrono::steady_clock::now();
  }
  Timed(const char* kind, const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& out) : Timed(kind) {
    if (on_ && Profile::instance().level() > 1) {
      // matmul (batch, M, N) with K and the transpose flags: "matmul 1x256x2304 K768 NN"
      detail_ = std::string(kind) + " " + std::to_string(out.size(0)) + "x" + std::to_string(out.size(1)) + "x" +
                std::to_string(out.size(2)) + " K" + std::to_string(ta ? a.size(1) : a.size(2)) + " " +
                (ta ? "T" : "N") + (tb ? "T" : "N") + " " + std::string(dtype_name(b.dtype()));
    }
  }
  // Other kernels at MP_PROFILE=2: the kind, the output's shape and whether any operand is strided.
  Timed(const char* kind, const Tensor& out, const Tensor& in) : Timed(kind) {
    if (on_ && Profile::instance().level() > 1) {
      detail_ = std::string(kind) + " " + shape_str(out.shape());
      if (!out.is_contiguous() || (in.defined() && !in.is_contiguous())) detail_ += " strided";
    }
  }
  ~Timed() {
    if (!on_) return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    Profile::instance().add(detail_.empty() ? std::string(kind_) : detail_, s);
  }

 private:
  bool on_;
  const char* kind_;
  std::string detail_;
  std::chrono::steady_clock::time_point t0_;
};

constexpr const char* kBinaryNames[] = {"binary add", "binary sub", "binary mul", "binary div"};
constexpr const char* kUnaryNames[] = {"unary neg",  "unary exp",  "unary log",  "unary sqrt",
                                       "unary tanh", "unary relu", "unary gelu", "unary square"};
constexpr const char* kUnaryBackwardNames[] = {
    "unary_backward neg",  "unary_backward exp",  "unary_backward log",  "unary_backward sqrt",
    "unary_backward tanh", "unary_backward relu", "unary_backward gelu", "unary_backward square"};

}  // namespace

// Host memory for tensors. Small blocks: 64-byte aligned (a cache line, an
// AVX-512 vector) from malloc. Large blocks (>= 1 MiB) are what a training
// step churns through: every step frees and re-allocates the same sizes
// (activations, gradients, the (B*T, V) logits), and fresh pages from the OS
// cost a page fault and a zeroing pass each on first touch. So a freed large
// block is kept, by size, and handed to the next request of that size; the
// cache holds at most kMaxCached bytes (MP_CPU_CACHE_MB overrides), beyond
// which freed blocks go back to the OS. Large blocks are 2 MiB aligned and
// marked MADV_HUGEPAGE, so where the kernel allows transparent huge pages
// they fault in 2 MiB at a time and use fewer TLB entries (the 154 MB
// embedding a GEMM streams through). The Ledger (kept by Storage) counts
// live tensors only, not the cache.
class BlockCache {
 public:
  BlockCache() {
    const char* env = std::getenv("MP_CPU_CACHE_MB");
    if (env) max_cached_ = size_t(std::strtoull(env, nullptr, 10)) << 20;
  }
  ~BlockCache() {
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
  }

  void* allocate(size_t bytes) {
    if (bytes < kLarge) {
      constexpr size_t kAlign = 64;  // aligned_alloc wants the size to be a multiple of the alignment
      size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
      void* p = std::aligned_alloc(kAlign, rounded == 0 ? kAlign : rounded);
      if (!p) fail("out of host memory allocating {} bytes", bytes);
      return p;
    }
    const size_t size = round_large(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= size;
        return p;
      }
    }
    // posix_memalign, not aligned_alloc: the size is a multiple of 64 KiB,
    // not of the 2 MiB alignment, which aligned_alloc requires (ASan checks).
    void* p = huge_aligned(size);
    if (!p) {
      release_all();  // the cache may hold what this request needs
      p = huge_aligned(size);
    }
    if (!p) fail("out of host memory allocating {} bytes", bytes);
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE);  // advice only: ignore failure
#endif
    return p;
  }

  void deallocate(void* p, size_t bytes) {
    if (bytes < kLarge) {
      std::free(p);
      return;
    }
    const size_t size = round_large(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + size <= max_cached_) {
        free_[size].push_back(p);
        cached_ += size;
        return;
      }
    }
    std::free(p);
  }

 private:
  static constexpr size_t kLarge = size_t(1) << 20;      // blocks from here up are cached
  static constexpr size_t kHugePage = size_t(2) << 20;   // alignment of large blocks
  static constexpr size_t kGranule = size_t(64) << 10;   // large sizes round up to this
  static size_t round_large(size_t bytes) { return (bytes + kGranule - 1) / kGranule * kGranule; }
  static void* huge_aligned(size_t size) {
    void* p = nullptr;
    return posix_memalign(&p, kHugePage, size) == 0 ? p : nullptr;
  }

  void release_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    cached_ = 0;
  }

  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;  // size -> free blocks of exactly that size
  size_t cached_ = 0;
  size_t max_cached_ = size_t(2048) << 20;
};

class CpuBackend final : public Backend {
 public:
  Device device() const override { return kCPU; }

  void* allocate(size_t bytes, Tag) override { return blocks_.allocate(bytes); }
  void deallocate(void* p, size_t bytes, Tag) override { blocks_.deallocate(p, bytes); }
  void copy_from_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }

  void copy(const Tensor& src, const Tensor& dst) override {
    Timed t("copy", dst, src);
    cpu::copy(src, dst);
  }
  void fill(const Tensor& dst, double value) override {
    Timed t("fill", dst, Tensor());
    cpu::fill(dst, value);
  }
  void random(const Tensor& dst, Distribution dist, double a, double b, uint64_t seed) override {
    Timed t("random");
    cpu::random(dst, dist, a, b, seed);
  }

  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    Timed t(kBinaryNames[int(op)], out, a.is_contiguous() ? b : a);
    cpu::binary(op, a, b, out);
  }
  void unary(UnaryOp op, const Tensor& a, const Tensor& out) override {
    Timed t(kUnaryNames[int(op)]);
    cpu::unary(op, a, out);
  }
  void unary_backward(UnaryOp op, const Tensor& x_or_y, const Tensor& gy, const Tensor& gx) override {
    Timed t(kUnaryBackwardNames[int(op)]);
    cpu::unary_backward(op, x_or_y, gy, gx);
  }
  void axpby(float alpha, const Tensor& a, float beta, const Tensor& out) override {
    Timed t("axpby", out, a);
    cpu::axpby(alpha, a, beta, out);
  }
  void reduce(ReduceOp op, const Tensor& a, int axis, const Tensor& out) override {
    Timed t(op == ReduceOp::sum ? "reduce sum" : "reduce max");
    cpu::reduce(op, a, axis, out);
  }

  void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out, float alpha,
              float beta) override {
    Timed t("matmul", a, trans_a, b, trans_b, out);
    cpu::matmul(a, trans_a, b, trans_b, out, alpha, beta);
  }

  void softmax(const Tensor& x, const Tensor& y, bool log) override {
    Timed t("softmax");
    cpu::softmax(x, y, log);
  }
  void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override {
    Timed t("softmax_backward");
    cpu::softmax_backward(y, gy, gx, log);
  }

  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& y, const Tensor& mean,
                  const Tensor& rstd) override {
    Timed t("layer_norm");
    cpu::layer_norm(x, w, b, eps, y, mean, rstd);
  }
  void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& mean,
                           const Tensor& rstd, const Tensor& gx, const Tensor& gw, const Tensor& gb) override {
    Timed t("layer_norm_backward");
    cpu::layer_norm_backward(gy, x, w, mean, rstd, gx, gw, gb);
  }

  void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) override {
    Timed t("embedding");
    cpu::embedding(ids, table, out);
  }
  void embedding_backward(const Tensor& ids, const Tensor& gout, const Tensor& gtable, int padding_idx) override {
    Timed t("embedding_backward");
    cpu::embedding_backward(ids, gout, gtable, padding_idx);
  }

  void cross_entropy(const Tensor& logits, const Tensor& targets, int ignore_index, const Tensor& losses) override {
    Timed t("cross_entropy");
    cpu::cross_entropy(logits, targets, ignore_index, losses);
  }
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int ignore_index, float gscale,
                              const Tensor& glogits) override {
    Timed t("cross_entropy_backward");
    cpu::cross_entropy_backward(logits, targets, ignore_index, gscale, glogits);
  }

  void dropout(const Tensor& x, float p, uint64_t seed, const Tensor& out) override {
    Timed t("dropout");
    cpu::dropout(x, p, seed, out);
  }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p, const Tensor& out,
                 const Tensor& lse) override {
    Timed t("attention");
    cpu::attention(q, k, v, p, out, lse);
  }
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& gout, const AttentionParams& p, const Tensor& gq, const Tensor& gk,
                          const Tensor& gv) override {
    Timed t("attention_backward");
    cpu::attention_backward(q, k, v, out, lse, gout, p, gq, gk, gv);
  }

  void adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr, float beta1,
             float beta2, float eps, float weight_decay, int64_t step) override {
    Timed t("adamw");
    cpu::adamw(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step);
  }

 private:
  BlockCache blocks_;
};

}  // namespace cpu

Backend* cpu_backend() {
  static cpu::CpuBackend instance;
  return &instance;
}

}  // namespace mp
