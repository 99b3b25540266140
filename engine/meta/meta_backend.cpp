// The meta backend: tensors with shapes, dtypes and tags but no bytes. Its
// allocations return no memory, and Storage counts them in the Ledger under
// the meta device exactly as it counts CPU allocations; its kernels compute
// nothing. Running the real code on meta tensors therefore allocates and
// frees, in the same order, what a CPU run would, which is how the memory
// planner (train/memory_plan.h) predicts a training step without doing it.
//
// It mirrors the CPU backend's memory, not its maths: where a CPU kernel
// holds ledgered workspace (matmul widening bf16 operands, a panel of an NF4
// weight), this backend
// allocates as much for the duration of the call. Reading values (item(),
// to(kCPU)) is an mp::Error naming the tensor's shape (engine/tensor.cpp).
#include "engine/backend.h"
#include "engine/cpu/kernels.h"
#include "engine/error.h"
#include "engine/tensor.h"

namespace mp {

namespace {

class MetaBackend final : public Backend {
 public:
  Device device() const override { return kMeta; }

  // No bytes: every meta storage points at one dummy byte, never read or written.
  void* allocate(size_t, Tag) override { return &dummy_; }
  void deallocate(void*, size_t, Tag) override {}
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
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p, const Tensor&,
                 const Tensor&) override {
    hold_workspace(cpu::attention_workspace_bytes(q, k, v, p, false, false));
  }
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor&, const Tensor&, const Tensor&,
                          const AttentionParams& p, const Tensor&, const Tensor&, const Tensor& gv) override {
    hold_workspace(cpu::attention_workspace_bytes(q, k, v, p, true, gv.defined()));
  }
  void adamw(const Tensor&, const Tensor&, const Tensor&, const Tensor&, float, float, float, float, float,
             int64_t) override {}

  void nf4_quantize(const Tensor& w, Nf4Tensor&) override {
    Tensor::empty({nf4_blocks(w.numel())}, DType::f32, kMeta, Tag::workspace);  // the absmax before its quantization
  }
  void nf4_dequantize(const Nf4Tensor&, const Tensor&) override {}
  void nf4_matmul(const Tensor& x, const Nf4Tensor& w, bool transpose_w, const Tensor&) override {
    hold_workspace(cpu::nf4_matmul_workspace_bytes(x, w, transpose_w));
  }

 private:
  // The workspace a CPU kernel holds during the call, as the same bytes here.
  static void hold_workspace(int64_t bytes) {
    if (bytes > 0) Tensor::empty({bytes}, DType::u8, kMeta, Tag::workspace);
  }

  alignas(64) static inline char dummy_ = 0;
};

}  // namespace

Backend* meta_backend() {
  static MetaBackend backend;
  return &backend;
}

}  // namespace mp
