#include "autograd/autocast.h"

#include "engine/error.h"

namespace mp::ag {

namespace {
thread_local DType g_autocast = DType::f32;
}

DType autocast_dtype() { return g_autocast; }

Tensor gemm_operand(const Tensor& t, DType compute) {
  return compute == DType::bf16 && t.dtype() != DType::bf16 ? t.to(DType::bf16) : t;
}

AutocastScope::AutocastScope(DType t) : saved_(g_autocast) {
  if (t != DType::f32 && t != DType::bf16) fail("autocast dtype must be f32 or bf16, not {}", dtype_name(t));
  g_autocast = t;
}

AutocastScope::~AutocastScope() { g_autocast = saved_; }

}  // namespace mp::ag
