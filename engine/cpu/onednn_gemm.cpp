// oneDNN's matmul primitive behind the engine's GEMM call (onednn_gemm.h).
//
// One primitive per distinct call, created on first use and cached (a hit
// is a map lookup; a miss builds the primitive descriptor, and on first
// execution JIT-compiles the kernel: measured by bench_kernels' GemmMiss).
// oneDNN runs its own OpenMP threads: it is called outside OpenMP regions.
#include "engine/cpu/onednn_gemm.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <map>
#include <memory>
#include <tuple>

#include "engine/cpu/kernels.h"

namespace mp::cpu {

namespace {

using dims = dnnl::memory::dims;
using dt = dnnl::memory::data_type;

const dnnl::engine& cpu_engine() {
  static const dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// When B is shared and A is not transposed, the batch is one (batch*M, K)
// matrix: one large GEMM instead of many small ones.
GemmShape flattened(GemmShape s) {
  if (s.batch > 1 && s.batch_b == 1 && s.batch_a == s.batch && !s.ta && s.lda == s.K && s.ldc == s.N) {
    s.M *= s.batch;
    s.batch = s.batch_a = 1;
  }
  return s;
}

auto key(const GemmShape& s) {
  return std::make_tuple(int(s.dtype), s.ta, s.tb, s.batch, s.M, s.N, s.K, s.batch_a, s.batch_b, s.alpha, s.beta,
                         s.lda, s.ldb, s.ldc);
}

// A (batch_a, M, K) and B (batch_b, K, N) as strided views of what is stored.
dnnl::memory::desc a_desc(const GemmShape& s, dt t) {
  return {dims{s.batch_a, s.M, s.K}, t, s.ta ? dims{s.M * s.K, 1, s.lda} : dims{s.M * s.K, s.lda, 1}};
}
dnnl::memory::desc b_desc(const GemmShape& s, dt t) {
  return {dims{s.batch_b, s.K, s.N}, t, s.tb ? dims{s.K * s.N, 1, s.ldb} : dims{s.K * s.N, s.ldb, 1}};
}
dnnl::memory::desc c_desc(const GemmShape& s) { return {dims{s.batch, s.M, s.N}, dt::f32, dims{s.M * s.N, s.ldc, 1}}; }

struct Entry {
  bool available = false;
  dnnl::matmul::primitive_desc pd;
  std::unique_ptr<dnnl::matmul> prim;  // made at the first execution
  std::string impl;
  int64_t scratchpad_bytes = 0;
};

Entry make_entry(const GemmShape& s) {
  Entry e;
  const dt t = s.dtype == DType::bf16 ? dt::bf16 : dt::f32;
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (s.alpha != 1.f) attr.set_output_scales(0, {s.alpha});
  if (s.beta != 0.f) {
    dnnl::post_ops po;
    po.append_sum(s.beta);
    attr.set_post_ops(po);
  }
  try {
    const dnnl::matmul::desc d(a_desc(s, t), b_desc(s, t), c_desc(s));
    e.pd = dnnl::matmul::primitive_desc(d, attr, cpu_engine());
  } catch (const dnnl::error&) {
    return e;  // no kernel for this call
  }
  e.impl = e.pd.impl_info_str();
  e.available = e.impl.rfind("ref", 0) != 0;  // never oneDNN's generic reference code
  e.scratchpad_bytes = int64_t(e.pd.scratchpad_desc().get_size());
  return e;
}

Entry& entry(const GemmShape& shape) {
  thread_local std::map<decltype(key(shape)), Entry> cache;
  const GemmShape s = flattened(shape);
  auto it = cache.find(key(s));
  if (it == cache.end()) it = cache.emplace(key(s), make_entry(s)).first;
  return it->second;
}

}  // namespace

bool onednn_gemm_available(const GemmShape& s) {
  if (s.dtype != DType::f32 && s.dtype != DType::bf16) return false;
  return entry(s).available;
}

int64_t onednn_gemm_scratchpad_bytes(const GemmShape& s) {
  return onednn_gemm_available(s) ? entry(s).scratchpad_bytes : 0;
}

std::string onednn_gemm_impl(const GemmShape& s) { return onednn_gemm_available(s) ? entry(s).impl : ""; }

void onednn_gemm(const GemmShape& shape, const void* A, const void* B, float* C, Device device) {
  Entry& e = entry(shape);
  Tensor scratch = e.scratchpad_bytes ? workspace({(e.scratchpad_bytes + 3) / 4}, DType::f32, device) : Tensor();  // oneDNN's own layout
  if (device == kMeta) return;  // a dry run (kernels.h): the scratchpad, nothing computed
  if (!e.prim) e.prim = std::make_unique<dnnl::matmul>(e.pd);
  const auto& eng = cpu_engine();
  dnnl::memory a(e.pd.src_desc(), eng, const_cast<void*>(A));
  dnnl::memory b(e.pd.weights_desc(), eng, const_cast<void*>(B));
  dnnl::memory c(e.pd.dst_desc(), eng, C);
  dnnl::memory pad(e.pd.scratchpad_desc(), eng, e.scratchpad_bytes ? scratch.data<float>() : nullptr);
  thread_local dnnl::stream stream(eng);
  e.prim->execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}, {DNNL_ARG_SCRATCHPAD, pad}});
  stream.wait();
}

}  // namespace mp::cpu
