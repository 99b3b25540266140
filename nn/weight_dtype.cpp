#include "nn/weight_dtype.h"

#include "engine/error.h"

namespace mp::nn {

namespace {
thread_local DType g_weight_dtype = DType::f32;
}

DType weight_dtype() { return g_weight_dtype; }

WeightDTypeScope::WeightDTypeScope(DType t) : saved_(g_weight_dtype) {
  if (t == DType::i32) fail("weight dtype must be f32, bf16 or f64, not {}", dtype_name(t));
  g_weight_dtype = t;
}

WeightDTypeScope::~WeightDTypeScope() { g_weight_dtype = saved_; }

}  // namespace mp::nn
