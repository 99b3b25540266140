// The CPU backend: memory is 64-byte aligned host memory, and every kernel is
// forwarded to its family's file (elementwise.cpp, matmul.cpp, ...).
#include <cstdlib>
#include <cstring>
#include <new>

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

class CpuBackend final : public Backend {
 public:
  Device device() const override { return kCPU; }

  // 64-byte alignment (a cache line, an AVX-512 vector); aligned_alloc wants
  // the size to be a multiple of the alignment.
  void* allocate(size_t bytes, Tag) override {
    constexpr size_t kAlign = 64;
    size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
    void* p = std::aligned_alloc(kAlign, rounded == 0 ? kAlign : rounded);
    if (!p) fail("out of host memory allocating {} bytes", bytes);
    return p;
  }
  void deallocate(void* p, size_t, Tag) override { std::free(p); }
  void copy_from_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }

  void copy(const Tensor& src, const Tensor& dst) override { cpu::copy(src, dst); }
  void fill(const Tensor& dst, double value) override { cpu::fill(dst, value); }
  void random(const Tensor& dst, Distribution dist, double a, double b, uint64_t seed) override {
    cpu::random(dst, dist, a, b, seed);
  }

  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    cpu::binary(op, a, b, out);
  }
  void unary(UnaryOp op, const Tensor& a, const Tensor& out) override { cpu::unary(op, a, out); }
  void unary_backward(UnaryOp op, const Tensor& x_or_y, const Tensor& gy, const Tensor& gx) override {
    cpu::unary_backward(op, x_or_y, gy, gx);
  }
  void axpby(float alpha, const Tensor& a, float beta, const Tensor& out) override {
    cpu::axpby(alpha, a, beta, out);
  }
  void reduce(ReduceOp op, const Tensor& a, int axis, const Tensor& out) override { cpu::reduce(op, a, axis, out); }

  void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out, float alpha,
              float beta) override {
    cpu::matmul(a, trans_a, b, trans_b, out, alpha, beta);
  }

  void softmax(const Tensor& x, const Tensor& y, bool log) override { cpu::softmax(x, y, log); }
  void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override {
    cpu::softmax_backward(y, gy, gx, log);
  }

  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& y, const Tensor& mean,
                  const Tensor& rstd) override {
    cpu::layer_norm(x, w, b, eps, y, mean, rstd);
  }
  void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& mean,
                           const Tensor& rstd, const Tensor& gx, const Tensor& gw, const Tensor& gb) override {
    cpu::layer_norm_backward(gy, x, w, mean, rstd, gx, gw, gb);
  }

  void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) override {
    cpu::embedding(ids, table, out);
  }
  void embedding_backward(const Tensor& ids, const Tensor& gout, const Tensor& gtable) override {
    cpu::embedding_backward(ids, gout, gtable);
  }

  void cross_entropy(const Tensor& logits, const Tensor& targets, int ignore_index, const Tensor& losses) override {
    cpu::cross_entropy(logits, targets, ignore_index, losses);
  }
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int ignore_index, float gscale,
                              const Tensor& glogits) override {
    cpu::cross_entropy_backward(logits, targets, ignore_index, gscale, glogits);
  }

  void dropout(const Tensor& x, float p, uint64_t seed, const Tensor& out) override { cpu::dropout(x, p, seed, out); }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p, const Tensor& out,
                 const Tensor& lse) override {
    cpu::attention(q, k, v, p, out, lse);
  }
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& gout, const AttentionParams& p, const Tensor& gq, const Tensor& gk,
                          const Tensor& gv) override {
    cpu::attention_backward(q, k, v, out, lse, gout, p, gq, gk, gv);
  }

  void adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr, float beta1,
             float beta2, float eps, float weight_decay, int64_t step) override {
    cpu::adamw(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step);
  }
};

}  // namespace cpu

Backend* cpu_backend() {
  static cpu::CpuBackend instance;
  return &instance;
}

}  // namespace mp
