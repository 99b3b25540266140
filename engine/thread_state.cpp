#include "engine/thread_state.h"

#include "engine/error.h"

namespace mp {

static thread_local ThreadState g_state;

const ThreadState& thread_state() { return g_state; }

StateScope::StateScope(const ThreadState& s) : saved_(g_state) {
  if (s.autocast.dtype != DType::f32 && s.autocast.dtype != DType::bf16)
    fail("autocast dtype must be f32 or bf16, not {}", dtype_name(s.autocast.dtype));
  if (s.weight_dtype == DType::i32) fail("weight dtype must be f32, bf16 or f64, not {}", dtype_name(s.weight_dtype));
  g_state = s;
}

StateScope::~StateScope() { g_state = saved_; }

}  // namespace mp
