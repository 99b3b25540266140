// Mixed precision: under an AutocastScope(DType::bf16), ag::linear (every
// linear layer and the LM head) runs its three GEMMs on bf16 copies of its
// operands (x, W and the incoming gradient), accumulating and writing f32,
// and saves the bf16 copy of x for dW: half the bytes of the activations a
// trained weight needs. The weights themselves (the f32 masters), their
// gradients, the optimizer state and every other op stay f32. On a GPU the
// bf16 GEMMs run on tensor cores; the CPU backend widens bf16 to f32 and
// calls sgemm, so there it saves memory but not time.
//
//   { ag::AutocastScope bf16(DType::bf16); loss = model.loss(ids, ids); }
//   loss.backward();   // each op's backward uses the dtype of its forward
#pragma once
#include "engine/dtype.h"
#include "engine/tensor.h"

namespace mp::ag {

// The dtype linear layers compute in: f32 unless an AutocastScope is active.
DType autocast_dtype();

// A GEMM operand as a layer computing in `compute` reads it: a bf16 copy of t
// when compute is bf16 (t itself if already bf16), else t itself.
Tensor gemm_operand(const Tensor& t, DType compute);

class AutocastScope {
 public:
  // f32 (off) or bf16; another dtype is an mp::Error.
  explicit AutocastScope(DType t);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  DType saved_;
};

}  // namespace mp::ag
