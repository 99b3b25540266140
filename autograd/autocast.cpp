#include "autograd/autocast.h"

#include "engine/error.h"
#include "engine/memory.h"

namespace mp::ag {

void CastCache::add_frozen(const Tensor& t) {
  if (t.dtype() == DType::f32) entries_[key(t)] = Entry{t, Tensor()};
}

Tensor CastCache::bf16_copy(const Tensor& t) {
  auto it = entries_.find(key(t));
  if (it == entries_.end()) return Tensor();
  Entry& e = it->second;
  if (e.source.shape() != t.shape() || e.source.strides() != t.strides()) return Tensor();  // another view
  if (!e.copy.defined()) {
    TagScope tag(Tag::weights);  // lives as long as the weight
    e.copy = t.to(DType::bf16);
  }
  return e.copy;
}

Tensor gemm_operand(const Tensor& t, DType compute, CastCache* cache) {
  if (compute != DType::bf16 || t.dtype() == DType::bf16) return t;
  if (cache)
    if (Tensor kept = cache->bf16_copy(t); kept.defined()) return kept;
  return t.to(DType::bf16);
}

}  // namespace mp::ag
