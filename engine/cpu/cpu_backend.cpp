// The CPU backend: host memory from a BlockPool (engine/block_pool.h) over
// mmap and malloc (block_cache.h), every
// kernel forwarded to its family's file (elementwise.cpp, matmul.cpp, ...)
// and timed when MP_PROFILE is set (profile.h). A second instance serves the
// sim device (engine/device.h): the same kernels on its own pool.
#include <cstring>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/cpu/block_cache.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/profile.h"

namespace mp {
namespace cpu {

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

Tensor workspace(const Shape& shape, DType dt, Device device) { return Tensor::empty(shape, dt, device, Tag::workspace); }

namespace {

constexpr const char* kBinaryNames[] = {"binary add", "binary sub", "binary mul", "binary div"};
constexpr const char* kUnaryNames[] = {"unary neg",  "unary exp",  "unary log",  "unary sqrt",
                                       "unary tanh", "unary relu", "unary gelu", "unary square"};
constexpr const char* kUnaryBackwardNames[] = {
    "unary_backward neg",  "unary_backward exp",  "unary_backward log",  "unary_backward sqrt",
    "unary_backward tanh", "unary_backward relu", "unary_backward gelu", "unary_backward square"};

}  // namespace

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(Device device) : device_(device) {}
  Device device() const override { return device_; }

  void* allocate(size_t bytes, Tag) override { return blocks_.allocate(bytes); }
  void deallocate(void* p, size_t bytes, Tag) override { blocks_.deallocate(p, bytes); }
  void empty_cache() override { blocks_.release_cached(); }
  void copy_from_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }

  void copy(const Tensor& src, const Tensor& dst) override {
    KernelCall t("copy", dst, src);
    cpu::copy(src, dst);
  }
  void fill(const Tensor& dst, double value) override {
    KernelCall t("fill", dst, Tensor());
    cpu::fill(dst, value);
  }
  void random(const Tensor& dst, Distribution dist, double a, double b, uint64_t seed) override {
    KernelCall t("random");
    cpu::random(dst, dist, a, b, seed);
  }

  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    KernelCall t(kBinaryNames[int(op)], out, a.is_contiguous() ? b : a);
    cpu::binary(op, a, b, out);
  }
  void unary(UnaryOp op, const Tensor& a, const Tensor& out) override {
    KernelCall t(kUnaryNames[int(op)]);
    cpu::unary(op, a, out);
  }
  void unary_backward(UnaryOp op, const Tensor& x_or_y, const Tensor& gy, const Tensor& gx) override {
    KernelCall t(kUnaryBackwardNames[int(op)]);
    cpu::unary_backward(op, x_or_y, gy, gx);
  }
  void axpby(float alpha, const Tensor& a, float beta, const Tensor& out) override {
    KernelCall t("axpby", out, a);
    cpu::axpby(alpha, a, beta, out);
  }
  void arange(const Tensor& dst, int64_t start) override {
    KernelCall t("arange", dst, Tensor());
    cpu::arange(dst, start);
  }
  void mask_positions(const Tensor& mask, int64_t offset, const Tensor& out) override {
    KernelCall t("mask_positions", mask, out);
    cpu::mask_positions(mask, offset, out);
  }
  void clip_by_norm(const Tensor& grad, const Tensor& norm, double max_norm, double eps) override {
    KernelCall t("clip_by_norm", grad, Tensor());
    cpu::clip_by_norm(grad, norm, max_norm, eps);
  }
  void reduce(ReduceOp op, const Tensor& a, int axis, const Tensor& out) override {
    KernelCall t(op == ReduceOp::sum ? "reduce sum" : "reduce max");
    cpu::reduce(op, a, axis, out);
  }
  void add_sum_of_squares(const Tensor& x, const Tensor& sum) override {
    KernelCall t("add_sum_of_squares");
    cpu::add_sum_of_squares(x, sum);
  }

  void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out, float alpha,
              float beta) override {
    KernelCall t("matmul", a, trans_a, b, trans_b, out);
    cpu::matmul(a, trans_a, b, trans_b, out, alpha, beta);
  }
  std::string gemm_implementation(DType dt) const override { return cpu::gemm_implementation(dt); }

  void softmax(const Tensor& x, const Tensor& y, bool log) override {
    KernelCall t("softmax");
    cpu::softmax(x, y, log);
  }
  void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override {
    KernelCall t("softmax_backward");
    cpu::softmax_backward(y, gy, gx, log);
  }

  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& y, const Tensor& mean,
                  const Tensor& rstd) override {
    KernelCall t("layer_norm");
    cpu::layer_norm(x, w, b, eps, y, mean, rstd);
  }
  void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& mean,
                           const Tensor& rstd, const Tensor& gx, const Tensor& gw, const Tensor& gb) override {
    KernelCall t("layer_norm_backward");
    cpu::layer_norm_backward(gy, x, w, mean, rstd, gx, gw, gb);
  }

  void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) override {
    KernelCall t("embedding");
    cpu::embedding(ids, table, out);
  }
  void embedding_backward(const Tensor& ids, const Tensor& gout, const Tensor& gtable, int padding_idx) override {
    KernelCall t("embedding_backward");
    cpu::embedding_backward(ids, gout, gtable, padding_idx);
  }

  void cross_entropy(const Tensor& logits, const Tensor& targets, int ignore_index, const Tensor& losses,
                     const Tensor& lse) override {
    KernelCall t("cross_entropy");
    cpu::cross_entropy(logits, targets, ignore_index, losses, lse);
  }
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, int ignore_index,
                              const Tensor& gscale, const Tensor& glogits) override {
    KernelCall t("cross_entropy_backward");
    cpu::cross_entropy_backward(logits, targets, lse, ignore_index, gscale, glogits);
  }
  void inverse_target_count(const Tensor& targets, int ignore_index, const Tensor& out) override {
    KernelCall t("inverse_target_count");
    cpu::inverse_target_count(targets, ignore_index, out);
  }

  void dropout(const Tensor& x, float p, uint64_t seed, uint64_t offset, const Tensor& out) override {
    KernelCall t("dropout");
    cpu::dropout(x, p, seed, offset, out);
  }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p, const Tensor& out,
                 const Tensor& lse) override {
    KernelCall t("attention");
    cpu::attention(q, k, v, p, out, lse);
  }
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& gout, const AttentionParams& p, const Tensor& gq, const Tensor& gk,
                          const Tensor& gv) override {
    KernelCall t("attention_backward");
    cpu::attention_backward(q, k, v, out, lse, gout, p, gq, gk, gv);
  }

  void adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr, float beta1,
             float beta2, float eps, float weight_decay, int64_t step) override {
    KernelCall t("adamw");
    cpu::adamw(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step);
  }
  void nf4_quantize(const Tensor& w, Nf4Tensor& q) override {
    KernelCall t("nf4_quantize", w, Tensor());
    cpu::nf4_quantize(w, q);
  }
  void nf4_dequantize(const Nf4Tensor& q, const Tensor& out) override {
    KernelCall t("nf4_dequantize", out, Tensor());
    cpu::nf4_dequantize(q, out);
  }
  void nf4_matmul(const Tensor& x, const Nf4Tensor& w, bool transpose_w, const Tensor& out) override {
    KernelCall t("nf4_matmul", out, x);
    cpu::nf4_matmul(x, w, transpose_w, out);
  }

 private:
  Device device_;
  BlockPool blocks_{device_, host_memory()};
};

}  // namespace cpu

Backend* cpu_backend() {
  static cpu::CpuBackend instance(kCPU);
  return &instance;
}

Backend* sim_backend() {
  static cpu::CpuBackend instance(kSim);
  return &instance;
}

}  // namespace mp
