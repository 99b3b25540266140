#include "autograd/autocast.h"

#include "engine/error.h"
#include "engine/memory.h"

namespace mp::ag {

namespace {
thread_local DType g_autocast = DType::f32;
thread_local CastCache* g_cache = nullptr;
}  // namespace

DType autocast_dtype() { return g_autocast; }
CastCache* autocast_cache() { return g_cache; }

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

AutocastScope::AutocastScope(DType t, CastCache* cache) : saved_(g_autocast), saved_cache_(g_cache) {
  if (t != DType::f32 && t != DType::bf16) fail("autocast dtype must be f32 or bf16, not {}", dtype_name(t));
  g_autocast = t;
  g_cache = cache;
}

AutocastScope::~AutocastScope() {
  g_autocast = saved_;
  g_cache = saved_cache_;
}

}  // namespace mp::ag
