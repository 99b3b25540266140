// The meta backend planning the CUDA backend (kMetaCuda,
// engine/meta/meta_backend.h): its memory, not its maths. The blocks go
// through the CUDA allocator's policy (engine/caching_pool.h: rounded sizes,
// nothing given back while the device has room), and the kernels that hold
// workspace on the GPU run the same steps as there (engine/device_steps.h: a
// bf16 operand widened whole, an NF4 weight dequantized whole, attention
// backward's sums); every other CUDA kernel holds none. What CUDA holds
// outside the engine's allocator (the context, cuBLAS's own workspace) is
// not planned.
#include "engine/caching_pool.h"
#include "engine/device_steps.h"
#include "engine/meta/meta_backend.h"
#include "engine/nf4.h"

namespace mp {

namespace {

class CudaPlan final : public MetaBackend {
 public:
  CudaPlan() : MetaBackend(kMetaCuda) {}

  // No bytes: every block is one dummy byte, never read or written.
  void* allocate(size_t bytes, Tag tag) override { return pool_.allocate(bytes, tag); }
  void deallocate(void* p, size_t bytes, Tag) override { pool_.deallocate(p, bytes); }
  void empty_cache() override { pool_.release_cached(); }

  void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out, float alpha,
              float beta) override {
    if (mixed_bf16_f32(a, b, out)) matmul_widened(*this, a, trans_a, b, trans_b, out, alpha, beta);
  }
  std::string gemm_implementation(DType dt) const override {
    return dt == DType::bf16 ? "planned as cublas GemmEx bf16" : "planned as cublas GemmEx f32";
  }

  void attention(const Tensor&, const Tensor&, const Tensor&, const AttentionParams&, const Tensor&,
                 const Tensor&) override {}
  void attention_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor& lse,
                          const Tensor&, const AttentionParams&, const Tensor&, const Tensor&,
                          const Tensor&) override {
    attention_backward_sums(lse);  // held for the call, as on the GPU
  }

  // Quantizing runs on the host (the CUDA backend copies the weight there): nothing on the device.
  void nf4_quantize(const Tensor&, Nf4Tensor&) override {}
  void nf4_matmul(const Tensor& x, const Nf4Tensor& w, bool transpose_w, const Tensor& out) override {
    nf4_matmul_dequantized(*this, x, w, transpose_w, out);
  }

 private:
  alignas(64) static inline char dummy_ = 0;
  static void* dummy(size_t) { return &dummy_; }
  CachingPool pool_{kMetaCuda, {dummy, [](const std::vector<void*>&) {}}};
};

}  // namespace

Backend* cuda_plan_backend() {
  static CudaPlan backend;
  return &backend;
}

}  // namespace mp
