// Mixed precision: under an AutocastScope(DType::bf16), ag::linear (every
// linear layer and the LM head) runs its three GEMMs on bf16 copies of its
// operands (x, W and the incoming gradient), accumulating and writing f32,
// and saves the bf16 copy of x for dW: half the bytes of the activations a
// trained weight needs. The weights themselves (the f32 masters), their
// gradients, the optimizer state and every other op stay f32. On a GPU the
// bf16 GEMMs run on tensor cores; on a CPU with AVX512-BF16 or AMX, oneDNN's
// bf16 kernels (engine/cpu/onednn_gemm.h); elsewhere the CPU widens bf16 to
// f32 and calls sgemm, so there it saves memory but not time.
//
//   { ag::AutocastScope bf16(DType::bf16); loss = model.loss(ids, ids); }
//   loss.backward();   // each op's backward uses the dtype of its forward
//
// A frozen weight never changes, yet its bf16 copy would be made twice a
// step (forward and backward). A CastCache given to the scope keeps the copy
// of each weight declared frozen, made on first use: 2 bytes per frozen
// parameter, tagged weights, for the cache's life (train::TrainedModel holds
// one for a run of a PEFT method under mixed precision).
#pragma once
#include <map>
#include <utility>

#include "engine/dtype.h"
#include "engine/tensor.h"

namespace mp::ag {

// The dtype linear layers compute in: f32 unless an AutocastScope is active.
inline DType autocast_dtype() { return thread_state().autocast.dtype; }

// bf16 copies of frozen f32 weights, each made once.
class CastCache {
 public:
  // Declares t a frozen weight: nothing writes it while the cache is in use.
  void add_frozen(const Tensor& t);
  // t's bf16 copy if t (this very view) was declared frozen, made on the
  // first call; else an undefined Tensor.
  Tensor bf16_copy(const Tensor& t);

 private:
  struct Entry {
    Tensor source, copy;  // the source keeps its storage alive: no other tensor gets its address
  };
  using Key = std::pair<const Storage*, int64_t>;  // storage and offset (meta tensors have both too)
  static Key key(const Tensor& t) { return {t.storage().get(), t.offset()}; }
  std::map<Key, Entry> entries_;
};

// The cache of the innermost AutocastScope (null: none).
inline CastCache* autocast_cache() { return thread_state().autocast.cache; }

// A GEMM operand as a layer computing in `compute` reads it: a bf16 copy of t
// when compute is bf16 (t itself if already bf16), else t itself. With a
// cache, a weight declared frozen there gives its kept copy.
Tensor gemm_operand(const Tensor& t, DType compute, CastCache* cache = nullptr);

// AutocastScope(dtype, cache = nullptr): dtype f32 (off) or bf16, else an
// mp::Error. The cache must outlive the backward of what runs in the scope.
using AutocastScope = FieldScope<&ThreadState::autocast>;

}  // namespace mp::ag
