// The meta backend planning the CPU (kMeta, engine/meta/meta_backend.h): it
// mirrors the CPU backend's memory, not its maths. Its blocks go through the
// host allocator's policy (engine/block_pool.h), so that the bytes it would
// cache are ledgered here as they are there; where a CPU kernel holds
// ledgered workspace (a GEMM's scratchpad, bf16 operands widened), this
// backend runs the CPU kernel's dry run (engine/cpu/kernels.h: matmul,
// attention, nf4_matmul), which allocates the blocks one by one as on the
// CPU, so that the allocator caches the same blocks here as there.
#include "engine/block_pool.h"
#include "engine/cpu/kernels.h"
#include "engine/meta/meta_backend.h"

namespace mp {

namespace {

class CpuPlan final : public MetaBackend {
 public:
  CpuPlan() : MetaBackend(kMeta) {}

  // No bytes: every meta storage points at one dummy byte, never read or written.
  void* allocate(size_t bytes, Tag) override { return blocks_.allocate(bytes); }
  void deallocate(void* p, size_t bytes, Tag) override { blocks_.deallocate(p, bytes); }
  void empty_cache() override { blocks_.release_cached(); }

  void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out, float alpha,
              float beta) override {
    cpu::matmul(a, trans_a, b, trans_b, out, alpha, beta);  // a dry run: its workspace, block by block
  }
  std::string gemm_implementation(DType dt) const override { return "planned as " + cpu::gemm_implementation(dt); }

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

  void nf4_quantize(const Tensor& w, Nf4Tensor&) override {
    Tensor::empty({nf4_blocks(w.numel())}, DType::f32, kMeta, Tag::workspace);  // the absmax before its quantization
  }
  void nf4_matmul(const Tensor& x, const Nf4Tensor& w, bool transpose_w, const Tensor& out) override {
    cpu::nf4_matmul(x, w, transpose_w, out);  // a dry run, as attention's
  }

 private:
  alignas(64) static inline char dummy_ = 0;
  static void* dummy(size_t) { return &dummy_; }
  BlockPool blocks_{kMeta, {dummy, [](void*, size_t) {}, dummy, [](void*) {}}};
};

}  // namespace

Backend* cpu_plan_backend() {
  static CpuPlan backend;
  return &backend;
}

}  // namespace mp
