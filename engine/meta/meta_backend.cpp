// The meta backend: tensors with shapes, dtypes and tags but no bytes. Its
// allocations return no memory, and Storage counts them in the Ledger under
// the meta device exactly as it counts CPU allocations; its kernels compute
// nothing. Running the real code on meta tensors therefore allocates and
// frees, in the same order, what a CPU run would, which is how the memory
// planner (train/memory_plan.h) predicts a training step without doing it.
//
// It mirrors the CPU backend's memory, not its maths: where a CPU kernel
// holds ledgered workspace (a GEMM's scratchpad, bf16 operands widened),
// this backend allocates as much for the duration of the call; attention and
// nf4_matmul, which hold several blocks, run the CPU kernels' dry runs
// (engine/cpu/kernels.h), which allocate them one by one as on the CPU, so
// that the allocator (engine/block_pool.h) caches the same blocks here as
// there. Reading values (item(), to(kCPU)) is an mp::Error naming the
// tensor's shape (engine/tensor.cpp).
#include "engine/backend.h"
#include "engine/block_pool.h"
#include "engine/cpu/kernels.h"
#include "engine/error.h"
#include "engine/tensor.h"

namespace mp {

namespace {

class MetaBackend final : public Backend {
 public:
  Device device() const override { return kMeta; }

  // No bytes: every meta storage points at one dummy byte, never read or
  // written. The blocks go through the CPU's pool policy, so that the bytes
  // it would cache are ledgered here as they are there.
  void* allocate(size_t bytes, Tag) override { return blocks_.allocate(bytes); }
  void deallocate(void* p, size_t bytes, Tag) override { blocks_.deallocate(p, bytes); }
  void empty_cache() override { blocks_.release_cached(); }
  void copy_from_host(void*, const void*, size_t) override {}
  void copy_to_host(void*, const void*, size_t) override {
    fail("the meta device holds shapes only: there are no values to copy to the host");
  }

  void copy(const Tensor&, const Tensor&) override {}
  void fill(const Tensor&, double) override {}
  void random(const Tensor&, Distribution, double, double, uint64_t) override {}
  void binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&) override {}
  void unary(UnaryOp, const Tensor&, const Tensor&) override {}
  void unary_backward(UnaryOp, const Tensor&, const Tensor&, const Tensor&) override {}
  void axpby(float, const Tensor&, float, const Tensor&) override {}
  void arange(const Tensor&, int64_t) override {}
  void clip_by_norm(const Tensor&, const Tensor&, double, double) override {}
  void reduce(ReduceOp, const Tensor&, int, const Tensor&) override {}
  void add_sum_of_squares(const Tensor&, const Tensor&) override {}

  void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out, float alpha,
              float beta) override {
    const int64_t n = cpu::matmul_workspace_elements(a, trans_a, b, trans_b, out, alpha, beta);
    if (n > 0) Tensor::empty({n}, DType::f32, kMeta, Tag::workspace);  // held for the call, as on the CPU
  }
  std::string gemm_implementation(DType dt) const override { return "planned as " + cpu::gemm_implementation(dt); }

  void softmax(const Tensor&, const Tensor&, bool) override {}
  void softmax_backward(const Tensor&, const Tensor&, const Tensor&, bool) override {}
  void layer_norm(const Tensor&, const Tensor&, const Tensor&, float, const Tensor&, const Tensor&,
                  const Tensor&) override {}
  void layer_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const Tensor&, const Tensor&) override {}
  void embedding(const Tensor&, const Tensor&, const Tensor&) override {}
  void embedding_backward(const Tensor&, const Tensor&, const Tensor&, int) override {}
  void cross_entropy(const Tensor&, const Tensor&, int, const Tensor&, const Tensor&) override {}
  void cross_entropy_backward(const Tensor&, const Tensor&, const Tensor&, int, const Tensor&, const Tensor&) override {}
  void inverse_target_count(const Tensor&, int, const Tensor&) override {}
  void dropout(const Tensor&, float, uint64_t, uint64_t, const Tensor&) override {}
  // The CPU kernels' dry runs (engine/cpu/kernels.h): their workspace, block by block.
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p, const Tensor& out,
                 const Tensor& lse) override {
    cpu::attention(q, k, v, p, out, lse);
  }
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& gout, const AttentionParams& p, const Tensor& gq, const Tensor& gk,
                          const Tensor& gv) override {
    cpu::attention_backward(q, k, v, out, lse, gout, p, gq, gk, gv);
  }
  void adamw(const Tensor&, const Tensor&, const Tensor&, const Tensor&, float, float, float, float, float,
             int64_t) override {}

  void nf4_quantize(const Tensor& w, Nf4Tensor&) override {
    Tensor::empty({nf4_blocks(w.numel())}, DType::f32, kMeta, Tag::workspace);  // the absmax before its quantization
  }
  void nf4_dequantize(const Nf4Tensor&, const Tensor&) override {}
  void nf4_matmul(const Tensor& x, const Nf4Tensor& w, bool transpose_w, const Tensor& out) override {
    cpu::nf4_matmul(x, w, transpose_w, out);  // a dry run, as attention's
  }

 private:

  alignas(64) static inline char dummy_ = 0;
  static void* dummy(size_t) { return &dummy_; }
  BlockPool blocks_{kMeta, {dummy, [](void*, size_t) {}, dummy, [](void*) {}}};
};

}  // namespace

Backend* meta_backend() {
  static MetaBackend backend;
  return &backend;
}

}  // namespace mp
