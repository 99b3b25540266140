// The CUDA backend: device memory from a caching allocator (its cached
// blocks in the Ledger under Tag::cached), host <-> device
// copies, GEMMs through cuBLAS, and every other kernel in elementwise.cu and
// nn.cu (through the launchers of kernels.h). This file checks shapes and
// dtypes on Tensors, as the CPU backend does, and turns them into raw device
// pointers and simplified strided layouts.
//
// Everything runs on the legacy default stream: kernels, cuBLAS and
// cudaMemcpy run in issue order, so a block freed to the cache can be handed
// out again at once (the next kernel using it runs after the last one that
// used it).
#include "cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda/kernels.h"
#include "engine/backend.h"
#include "engine/caching_pool.h"
#include "engine/device_steps.h"
#include "engine/error.h"
#include "engine/matmul_dims.h"
#include "engine/nf4.h"
#include "engine/tensor.h"

namespace mp::cuda {

namespace {

bool g_tf32 = false;

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("cuda: {} failed: {}", what, cudaGetErrorString(e));
}

// After a launch: a bad configuration (or an earlier kernel's fault) becomes an mp::Error.
void check_launch(const char* what) {
  if (const char* msg = last_error()) fail("cuda: kernel {} failed: {}", what, msg);
}

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail("cublas: {} failed: {}", what, cublasGetStatusString(s));
}

Ptr ptr(const Tensor& t) { return t.defined() ? Ptr{t.raw(), t.dtype()} : Ptr{nullptr, DType::f32}; }

// The walk of N operands over `shape`, simplified like engine/cpu/strided.h:
// size-1 axes dropped, axes contiguous in every operand merged.
template <int N>
Strided<N> layout(const Shape& shape, const std::array<const Shape*, N>& strides) {
  Strided<N> L;
  L.numel = shape_numel(shape);
  std::vector<int64_t> s;
  std::array<std::vector<int64_t>, N> st;
  for (int d = int(shape.size()) - 1; d >= 0; --d) {  // innermost first
    if (shape[d] == 1) continue;
    bool merge = !s.empty();
    for (int k = 0; k < N && merge; ++k) merge = (*strides[k])[d] == st[k].back() * s.back();
    if (merge) {
      s.back() *= shape[d];
    } else {
      s.push_back(shape[d]);
      for (int k = 0; k < N; ++k) st[k].push_back((*strides[k])[d]);
    }
  }
  if (s.empty()) {  // one element
    s.push_back(1);
    for (int k = 0; k < N; ++k) st[k].push_back(0);
  }
  if (int(s.size()) > kMaxDims) fail("cuda: a strided view of shape {} has too many axes", shape_str(shape));
  L.ndim = int(s.size());
  for (int d = 0; d < L.ndim; ++d) {  // back to outermost first
    L.shape[d] = s[L.ndim - 1 - d];
    for (int k = 0; k < N; ++k) L.strides[k][d] = st[k][L.ndim - 1 - d];
  }
  return L;
}

void check_shape(const char* what, const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) fail("{}: shapes {} and {} differ", what, shape_str(a.shape()), shape_str(b.shape()));
}

void check_contiguous(const char* what, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->defined() && !t->is_contiguous()) fail("{}: tensors must be contiguous (cuda)", what);
}

void check_float(const char* what, const Tensor& t) {
  if (t.defined() && t.dtype() == DType::i32) fail("{}: dtype i32 is not supported (f32, bf16 or f64)", what);
}

// Rows (N) and the last axis (C) of a contiguous tensor.
std::pair<int64_t, int64_t> rows_cols(const Tensor& t) {
  const int64_t C = t.dim() ? t.shape().back() : 1;
  return {C ? t.numel() / C : 0, C};
}

// The caching allocator's source: cudaMalloc, and cudaFree after the device is idle.
void* device_malloc(size_t size) {
  void* p = nullptr;
  if (cudaMalloc(&p, size) == cudaSuccess) return p;
  (void)cudaGetLastError();  // out of memory: the pool releases its cache and asks once more
  return nullptr;
}
void device_release(const std::vector<void*>& blocks) {
  cudaError_t first = cudaDeviceSynchronize();
  for (void* p : blocks) {
    const cudaError_t e = cudaFree(p);
    if (first == cudaSuccess) first = e;
  }
  check_cuda(first, "releasing the cached blocks");
}

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    check_cuda(cudaMalloc(&flag_, sizeof(int)), "cudaMalloc");
    check_cuda(cudaMemset(flag_, 0, sizeof(int)), "cudaMemset");
  }
  // Never destroyed (see init()): tensors in static storage may outlive main.

  Device device() const override { return kCUDA; }

  // ---- memory: the caching allocator (engine/caching_pool.h), the policy
  // the memory planner runs on meta for a CUDA run.
  void* allocate(size_t bytes, Tag tag) override { return pool_.allocate(bytes, tag); }
  void deallocate(void* p, size_t bytes, Tag) override { pool_.deallocate(p, bytes); }

  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    check_cuda(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device");
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    check_cuda(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
  }
  void synchronize() override { check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

  size_t cached_bytes() const { return pool_.cached_bytes(); }
  void empty_cache() override { pool_.release_cached(); }

  // ---- copy, fill, random

  void copy(const Tensor& src, const Tensor& dst) override {
    check_shape("copy", src, dst);
    if (src.numel() == 0) return;
    if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
      if (src.raw() != dst.raw())
        check_cuda(cudaMemcpy(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToDevice), "cudaMemcpy");
      return;
    }
    launch_copy(layout<2>(dst.shape(), {&src.strides(), &dst.strides()}), ptr(src), ptr(dst));
    check_launch("copy");
  }

  void fill(const Tensor& dst, double value) override {
    if (dst.numel() == 0) return;
    launch_fill(layout<1>(dst.shape(), {&dst.strides()}), ptr(dst), value);
    check_launch("fill");
  }

  void random(const Tensor& dst, Distribution dist, double a, double b, uint64_t seed) override {
    if (dst.dtype() == DType::i32) fail("random: dtype i32 is not supported (f32, bf16 or f64)");
    if (dst.numel() == 0) return;
    launch_random(layout<1>(dst.shape(), {&dst.strides()}), ptr(dst), dist, a, b, seed);
    check_launch("random");
  }

  // ---- elementwise (any strides); f64 tensors compute in double, others in float

  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    check_shape("binary", a, out);
    check_shape("binary", b, out);
    check_float("binary", out);
    if (out.numel() == 0) return;
    launch_binary(op, layout<3>(out.shape(), {&a.strides(), &b.strides(), &out.strides()}), ptr(a), ptr(b), ptr(out),
                  out.dtype() == DType::f64);
    check_launch("binary");
  }

  void unary(UnaryOp op, const Tensor& a, const Tensor& out) override {
    check_shape("unary", a, out);
    check_float("unary", out);
    if (out.numel() == 0) return;
    launch_unary(op, layout<2>(out.shape(), {&a.strides(), &out.strides()}), ptr(a), ptr(out),
                 out.dtype() == DType::f64);
    check_launch("unary");
  }

  void unary_backward(UnaryOp op, const Tensor& x_or_y, const Tensor& gy, const Tensor& gx) override {
    check_shape("unary_backward", x_or_y, gx);
    check_shape("unary_backward", gy, gx);
    check_float("unary_backward", gx);
    if (gx.numel() == 0) return;
    launch_unary_backward(op, layout<3>(gx.shape(), {&x_or_y.strides(), &gy.strides(), &gx.strides()}), ptr(x_or_y),
                          ptr(gy), ptr(gx), gx.dtype() == DType::f64);
    check_launch("unary_backward");
  }

  void axpby(float alpha, const Tensor& a, float beta, const Tensor& out) override {
    check_shape("axpby", a, out);
    check_float("axpby", out);
    if (out.numel() == 0) return;
    launch_axpby(layout<2>(out.shape(), {&a.strides(), &out.strides()}), alpha, ptr(a), beta, ptr(out),
                 out.dtype() == DType::f64);
    check_launch("axpby");
  }
  void arange(const Tensor& dst, int64_t start) override {
    if (dst.dtype() != DType::i32 || dst.dim() == 0)
      fail("arange: dst must be (..., T) i32, not {} {}", shape_str(dst.shape()), dtype_name(dst.dtype()));
    check_contiguous("arange", {&dst});
    const int64_t T = dst.size(dst.dim() - 1);
    launch_arange(T > 0 ? dst.numel() / T : 0, T, dst.data<int32_t>(), start);
    check_launch("arange");
  }
  void mask_positions(const Tensor& mask, int64_t offset, const Tensor& out) override {
    check_contiguous("mask_positions", {&mask, &out});
    launch_mask_positions(mask.size(0), mask.size(1), out.size(1), mask.data<int32_t>(), out.data<int32_t>(), offset);
    check_launch("mask_positions");
  }
  void clip_by_norm(const Tensor& grad, const Tensor& norm, double max_norm, double eps) override {
    check_float("clip_by_norm", grad);
    check_contiguous("clip_by_norm", {&grad, &norm});
    if (norm.numel() != 1 || norm.dtype() != DType::f64)
      fail("clip_by_norm: norm must be (1) f64, not {} {}", shape_str(norm.shape()), dtype_name(norm.dtype()));
    launch_clip_by_norm(grad.numel(), ptr(grad), norm.data<double>(), max_norm, eps);
    check_launch("clip_by_norm");
  }

  void reduce(ReduceOp op, const Tensor& a, int axis, const Tensor& out) override {
    if (axis < 0) axis += a.dim();
    Shape reduced = a.shape();
    reduced[axis] = 1;
    if (out.shape() != reduced)
      fail("reduce: output {} is not input {} with axis {} set to 1", shape_str(out.shape()), shape_str(a.shape()), axis);
    check_float("reduce", out);
    const int64_t len = a.shape()[axis];
    if (len == 0) {
      if (op == ReduceOp::max) fail("reduce: max over an empty axis of shape {}", shape_str(a.shape()));
      fill(out, 0.0);
      return;
    }
    if (out.numel() == 0) return;
    // Walk out's shape; operand 0 is a (its stride on the reduced axis is irrelevant: that axis has size 1 here).
    launch_reduce(op, layout<2>(reduced, {&a.strides(), &out.strides()}), len, a.strides()[axis], ptr(a), ptr(out),
                  out.dtype() == DType::f64);
    check_launch("reduce");
  }

  // ---- matmul through cuBLAS
  // cuBLAS is column-major; a row-major (r, c) buffer is a column-major (c, r)
  // matrix, its transpose. So out = op(a) op(b) (row-major) is computed as
  // out^T = op(b)^T op(a)^T (column-major): b first, then a, sizes (N, M, K),
  // and each operand's leading dimension is its stored row length.
  void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out, float alpha,
              float beta) override {
    const MatmulDims md = matmul_dims(a, trans_a, b, trans_b, out);
    const int64_t batch = md.batch, M = md.M, N = md.N, K = md.K, batch_a = md.batch_a, batch_b = md.batch_b;
    if (batch == 0 || M == 0 || N == 0) return;
    if (K == 0) {  // an empty sum: out = beta * out, and exactly 0 when beta is 0 (as BLAS, whatever out held)
      if (beta == 0.f) fill(out, 0.0);
      else axpby(beta, out, 0.f, out);
      return;
    }

    const DType ta = a.dtype(), tb = b.dtype(), to = out.dtype();
    const bool f64 = ta == DType::f64 && tb == DType::f64 && to == DType::f64;
    const bool f32 = ta == DType::f32 && tb == DType::f32 && to == DType::f32;
    const bool bf16_both = ta == DType::bf16 && tb == DType::bf16 && (to == DType::f32 || to == DType::bf16);
    const bool mixed = mixed_bf16_f32(a, b, out);
    if (!(f64 || f32 || bf16_both || mixed))
      fail("matmul: dtypes {} @ {} -> {} are not supported on cuda (f32, f64, bf16, or bf16 with f32)",
           dtype_name(ta), dtype_name(tb), dtype_name(to));
    if (mixed) {  // widen the bf16 operand (a frozen weight) to f32 scratch: the same sums as the CPU
      matmul_widened(*this, a, trans_a, b, trans_b, out, alpha, beta);
      return;
    }

    // A shared b and an untransposed a: the whole batch is one (batch*M, K) GEMM.
    int64_t rows = M, count = batch;
    if (batch > 1 && batch_b == 1 && batch_a == batch && !trans_a) {
      rows = batch * M;
      count = 1;
    }
    const long long stride_a = batch_a == 1 ? 0 : M * K, stride_b = batch_b == 1 ? 0 : K * N, stride_c = M * N;
    const int lda = int(a.size(2)), ldb = int(b.size(2)), ldc = int(N);
    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasHandle_t h = handle();
    if (f64) {
      const double al = alpha, be = beta;
      check_cublas(cublasDgemmStridedBatched(h, op_b, op_a, int(N), int(rows), int(K), &al, b.data<double>(), ldb,
                                             stride_b, a.data<double>(), lda, stride_a, &be, out.data<double>(), ldc,
                                             stride_c, int(count)),
                   "cublasDgemmStridedBatched");
      return;
    }
    const cudaDataType_t in_type = f32 ? CUDA_R_32F : CUDA_R_16BF;
    const cudaDataType_t out_type = to == DType::f32 ? CUDA_R_32F : CUDA_R_16BF;
    const cublasComputeType_t compute = f32 && g_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    check_cublas(cublasGemmStridedBatchedEx(h, op_b, op_a, int(N), int(rows), int(K), &alpha, b.raw(), in_type, ldb,
                                            stride_b, a.raw(), in_type, lda, stride_a, &beta, out.raw(), out_type, ldc,
                                            stride_c, int(count), compute, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmStridedBatchedEx");
  }
  std::string gemm_implementation(DType dt) const override {
    if (dt == DType::bf16) return "cublas GemmEx bf16";
    return g_tf32 ? "cublas GemmEx f32 (tf32)" : "cublas GemmEx f32";
  }

  // ---- softmax, layer norm (contiguous, over the last axis)

  void softmax(const Tensor& x, const Tensor& y, bool log) override {
    check_shape("softmax", x, y);
    check_contiguous("softmax", {&x, &y});
    check_float("softmax", x);
    const auto [N, C] = rows_cols(x);
    launch_softmax(N, C, ptr(x), ptr(y), log);
    check_launch("softmax");
  }

  void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override {
    check_shape("softmax_backward", y, gy);
    check_shape("softmax_backward", y, gx);
    check_contiguous("softmax_backward", {&y, &gy, &gx});
    check_float("softmax_backward", y);
    const auto [N, C] = rows_cols(y);
    launch_softmax_backward(N, C, ptr(y), ptr(gy), ptr(gx), log);
    check_launch("softmax_backward");
  }

  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& y, const Tensor& mean,
                  const Tensor& rstd) override {
    const auto [N, C] = rows_cols(x);
    check_rows("layer_norm", {{&x, N * C}, {&y, N * C}, {&w, C}, {&b, C}, {&mean, N}, {&rstd, N}});
    launch_layer_norm(N, C, ptr(x), ptr(w), ptr(b), eps, ptr(y), ptr(mean), ptr(rstd));
    check_launch("layer_norm");
  }

  void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                           const Tensor& gx, const Tensor& gw, const Tensor& gb) override {
    const auto [N, C] = rows_cols(x);
    check_rows("layer_norm_backward",
               {{&gy, N * C}, {&x, N * C}, {&gx, N * C}, {&w, C}, {&gw, C}, {&gb, C}, {&mean, N}, {&rstd, N}});
    for (const Tensor* g : {&gw, &gb})
      if (g->defined() && g->dtype() != DType::f32 && g->dtype() != DType::f64)
        fail("layer_norm_backward: gw and gb must be f32 or f64 on cuda, got {}", dtype_name(g->dtype()));
    launch_layer_norm_backward(N, C, ptr(gy), ptr(x), ptr(w), ptr(mean), ptr(rstd), ptr(gx), ptr(gw), ptr(gb));
    check_launch("layer_norm_backward");
  }

  // ---- embedding, cross-entropy: bad ids and targets are found on the GPU
  // (a flag in device memory), then named from a host copy of the ids.

  void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) override {
    if (table.dim() != 2) fail("embedding: table must be (V, C), got {}", shape_str(table.shape()));
    const int64_t V = table.size(0), C = table.size(1), N = ids.numel();
    if (out.numel() != N * C) fail("embedding: output {} does not hold {} rows of {}", shape_str(out.shape()), N, C);
    if (ids.dtype() != DType::i32) fail("embedding: ids must be i32, got {}", dtype_name(ids.dtype()));
    check_contiguous("embedding", {&ids, &table, &out});
    if (N * C == 0) return;
    launch_embedding(N, V, C, ids.data<int32_t>(), ptr(table), ptr(out), flag_);
    check_launch("embedding");
    if (flagged("embedding")) name_bad_index("embedding", "token id", ids, V, INT32_MIN);
  }

  void embedding_backward(const Tensor& ids, const Tensor& gout, const Tensor& gtable, int padding_idx) override {
    if (gtable.dim() != 2) fail("embedding_backward: gtable must be (V, C), got {}", shape_str(gtable.shape()));
    const int64_t V = gtable.size(0), C = gtable.size(1), N = ids.numel();
    if (gout.numel() != N * C)
      fail("embedding_backward: gout {} does not hold {} rows of {}", shape_str(gout.shape()), N, C);
    if (gout.dtype() != gtable.dtype() || (gtable.dtype() != DType::f32 && gtable.dtype() != DType::f64))
      fail("embedding_backward: gout {} and gtable {} must both be f32 or f64", dtype_name(gout.dtype()),
           dtype_name(gtable.dtype()));
    check_contiguous("embedding_backward", {&ids, &gout, &gtable});
    if (N * C == 0) return;
    // Ids out of range are skipped (the forward pass has reported them), and so is padding_idx.
    launch_embedding_backward(N, V, C, ids.data<int32_t>(), ptr(gout), ptr(gtable), padding_idx);
    check_launch("embedding_backward");
  }

  void cross_entropy(const Tensor& logits, const Tensor& targets, int ignore_index, const Tensor& losses,
                     const Tensor& lse) override {
    const auto [N, V] = check_ce("cross_entropy", logits, targets);
    for (const Tensor* t : {&losses, &lse})
      if (t->numel() != N || !t->is_contiguous())
        fail("cross_entropy: losses and lse {} must be ({})", shape_str(t->shape()), N);
    launch_cross_entropy(N, V, ptr(logits), targets.data<int32_t>(), ignore_index, ptr(losses), ptr(lse), flag_);
    check_launch("cross_entropy");
    if (flagged("cross_entropy")) name_bad_index("cross_entropy", "target", targets, V, ignore_index);
  }

  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, int ignore_index,
                              const Tensor& gscale, const Tensor& glogits) override {
    const auto [N, V] = check_ce("cross_entropy_backward", logits, targets);
    check_shape("cross_entropy_backward", logits, glogits);
    check_contiguous("cross_entropy_backward", {&glogits, &lse});
    if (lse.numel() != N) fail("cross_entropy_backward: lse {} must be ({})", shape_str(lse.shape()), N);
    if (gscale.numel() != 1 || gscale.dtype() != DType::f32)
      fail("cross_entropy_backward: gscale {} must be (1) f32", shape_str(gscale.shape()));
    launch_cross_entropy_backward(N, V, ptr(logits), targets.data<int32_t>(), ptr(lse), ignore_index,
                                  gscale.data<float>(), ptr(glogits), flag_);
    check_launch("cross_entropy_backward");
    if (flagged("cross_entropy_backward")) name_bad_index("cross_entropy_backward", "target", targets, V, ignore_index);
  }
  void add_sum_of_squares(const Tensor& x, const Tensor& sum) override {
    check_float("add_sum_of_squares", x);
    check_contiguous("add_sum_of_squares", {&x});
    launch_add_sum_of_squares(x.numel(), ptr(x), sum.data<double>());
    check_launch("add_sum_of_squares");
  }
  void inverse_target_count(const Tensor& targets, int ignore_index, const Tensor& out) override {
    if (targets.dtype() != DType::i32 || out.numel() != 1 || out.dtype() != DType::f32)
      fail("inverse_target_count: targets {} must be i32 and out (1) f32", shape_str(targets.shape()));
    check_contiguous("inverse_target_count", {&targets});
    launch_inverse_target_count(targets.numel(), targets.data<int32_t>(), ignore_index, out.data<float>());
    check_launch("inverse_target_count");
  }

  void dropout(const Tensor& x, float p, uint64_t seed, uint64_t offset, const Tensor& out) override {
    check_shape("dropout", x, out);
    check_contiguous("dropout", {&x, &out});
    check_float("dropout", x);
    if (x.numel() == 0) return;
    launch_dropout(x.numel(), ptr(x), ptr(out), p, seed, offset);
    check_launch("dropout");
  }

  // ---- attention

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p, const Tensor& out,
                 const Tensor& lse) override {
    const AttnDims d = attn_dims("attention", q, k, v, p);
    check_shape("attention", q, out);
    check_contiguous("attention", {&out, &lse});
    check_lse("attention", q, lse, d);
    launch_attention(d, ptr(q), ptr(k), ptr(v), ptr(out), ptr(lse));
    check_launch("attention");
  }

  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& gout, const AttentionParams& p, const Tensor& gq, const Tensor& gk,
                          const Tensor& gv) override {
    const AttnDims d = attn_dims("attention_backward", q, k, v, p);
    check_shape("attention_backward", q, out);
    check_shape("attention_backward", q, gout);
    if (gq.defined()) check_shape("attention_backward", q, gq);
    if (gk.defined()) check_shape("attention_backward", k, gk);
    if (gv.defined()) check_shape("attention_backward", v, gv);
    check_contiguous("attention_backward", {&out, &lse, &gout, &gq, &gk, &gv});
    check_lse("attention_backward", q, lse, d);
    Tensor delta = attention_backward_sums(lse);  // (B, H, T): sum_d gout * out
    launch_attention_backward(d, ptr(q), ptr(k), ptr(v), ptr(out), ptr(lse), ptr(gout), ptr(gq), ptr(gk), ptr(gv),
                              ptr(delta));
    check_launch("attention_backward");
  }

  void adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr, float beta1,
             float beta2, float eps, float weight_decay, int64_t step) override {
    for (const Tensor* t : {&grad, &m, &v}) check_shape("adamw", param, *t);
    for (const Tensor* t : {&param, &grad, &m, &v})
      if (t->dtype() != DType::f32) fail("adamw: tensors must be f32, got {}", dtype_name(t->dtype()));
    check_contiguous("adamw", {&param, &grad, &m, &v});
    if (step < 1) fail("adamw: step counts from 1, got {}", step);
    if (param.numel() == 0) return;
    launch_adamw(param.numel(), param.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(), lr, beta1,
                 beta2, eps, weight_decay, step);
    check_launch("adamw");
  }

  // ---- NF4 (engine/nf4.h). Quantizing is rare (once per weight, at load):
  // it runs on the host. Dequantizing is a kernel; the product dequantizes the
  // whole weight into workspace for one cuBLAS GEMM and frees it at once.
  void nf4_quantize(const Tensor& w, Nf4Tensor& q) override {
    Nf4Tensor h = mp::nf4_quantize(w.to(kCPU));  // the engine op, on the host
    q.packed.copy_from(h.packed);
    q.absmax.copy_from(h.absmax);
    q.nested_absmax.copy_from(h.nested_absmax);
    q.offset = h.offset;
  }
  void nf4_dequantize(const Nf4Tensor& q, const Tensor& out) override {
    check_contiguous("nf4_dequantize", {&out});
    static const Nf4Tables tables = [] {
      Nf4Tables t;
      std::copy(nf4_code().begin(), nf4_code().end(), t.nf4);
      std::copy(nf4_dynamic_code().begin(), nf4_dynamic_code().end(), t.dynamic);
      return t;
    }();
    launch_nf4_dequantize(0, q.numel(), q.packed.data<uint8_t>(), q.absmax.data<uint8_t>(),
                          q.nested_absmax.data<float>(), q.offset, tables, out.data<float>());
    check_launch("nf4_dequantize");
  }
  void nf4_matmul(const Tensor& x, const Nf4Tensor& w, bool transpose_w, const Tensor& out) override {
    nf4_matmul_dequantized(*this, x, w, transpose_w, out);
  }

 private:
  cublasHandle_t handle() {
    std::call_once(cublas_once_, [this] {
      check_cublas(cublasCreate(&cublas_), "cublasCreate");
      // Pedantic maths unless TF32 is asked for per call (compute type above).
      check_cublas(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    });
    return cublas_;
  }

  // Every tensor defined, contiguous, with the given element count.
  void check_rows(const char* what, std::initializer_list<std::pair<const Tensor*, int64_t>> ts) {
    for (auto [t, n] : ts) {
      if (!t->defined()) continue;
      if (t->numel() != n) fail("{}: tensor of shape {} should have {} elements", what, shape_str(t->shape()), n);
      if (!t->is_contiguous()) fail("{}: tensors must be contiguous", what);
      check_float(what, *t);
    }
  }

  std::pair<int64_t, int64_t> check_ce(const char* what, const Tensor& logits, const Tensor& targets) {
    if (logits.dim() != 2) fail("{}: logits must be (N, V), got {}", what, shape_str(logits.shape()));
    const int64_t N = logits.size(0), V = logits.size(1);
    if (targets.numel() != N) fail("{}: targets {} for logits {}", what, shape_str(targets.shape()), shape_str(logits.shape()));
    if (targets.dtype() != DType::i32) fail("{}: targets must be i32, got {}", what, dtype_name(targets.dtype()));
    check_contiguous(what, {&logits, &targets});
    check_float(what, logits);
    return {N, V};
  }

  // The kernel flagged an index outside [0, V): find the first on the host and throw.
  [[noreturn]] void name_bad_index(const char* what, const char* noun, const Tensor& ids, int64_t V, int ignore) {
    Tensor h = ids.to(kCPU);
    const int32_t* p = h.data<int32_t>();
    for (int64_t n = 0; n < h.numel(); ++n)
      if (p[n] != ignore && (p[n] < 0 || p[n] >= V))
        fail("{}: {} {} (position {}) is out of range for {} classes", what, noun, p[n], n, V);
    fail("{}: a {} is out of range for {} classes", what, noun, V);
  }

  AttnDims attn_dims(const char* what, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) {
    if (q.dim() != 4 || k.dim() != 4 || v.shape() != k.shape() || k.size(0) != q.size(0) || k.size(1) != q.size(1) ||
        k.size(3) != q.size(3) || k.size(2) < q.size(2))
      fail("{}: q {}, k {}, v {} must be (B, H, T, D), (B, H, S, D), (B, H, S, D) with S >= T", what,
           shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
    check_contiguous(what, {&q, &k, &v});
    for (const Tensor* t : {&q, &k, &v})
      if (t->dtype() != q.dtype() || t->dtype() == DType::i32)
        fail("{}: q, k, v must be all f32, all bf16 or all f64 on cuda, got {}, {}, {}", what, dtype_name(q.dtype()),
             dtype_name(k.dtype()), dtype_name(v.dtype()));
    AttnDims d{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3), p.scale, p.causal, nullptr, p.dropout, p.seed,
               p.dropout_offset};
    if (d.D > kMaxHeadDim) fail("{}: head size {} is larger than {} (cuda)", what, d.D, kMaxHeadDim);
    if (d.B * d.H > 65535) fail("{}: B * H = {} is more than 65535 (cuda grid limit)", what, d.B * d.H);
    if (p.key_mask) {
      const Tensor& m = *p.key_mask;
      if (m.dtype() != DType::i32 || m.numel() != d.B * d.S || !m.is_contiguous())
        fail("{}: key_mask {} must be contiguous (B, S) = ({}, {}) i32", what, shape_str(m.shape()), d.B, d.S);
      if (m.device().type != DeviceType::cuda) fail("{}: key_mask is on {}, q, k, v on cuda", what, m.device().str());
      d.key_mask = m.data<int32_t>();
    }
    return d;
  }

  // lse (B, H, T) in the kernels' compute type: f64 for f64 q, else f32.
  void check_lse(const char* what, const Tensor& q, const Tensor& lse, const AttnDims& d) {
    const DType want = q.dtype() == DType::f64 ? DType::f64 : DType::f32;
    if (lse.numel() != d.B * d.H * d.T || lse.dtype() != want)
      fail("{}: lse {} {} must be ({}, {}, {}) {}", what, shape_str(lse.shape()), dtype_name(lse.dtype()), d.B, d.H,
           d.T, dtype_name(want));
  }

  // Whether the last kernel flagged a bad index (and the flag reset).
  bool flagged(const char* what) {
    const int f = take_flag(flag_);
    if (f < 0) fail("cuda: {}: reading the error flag failed: {}", what, last_error());
    return f != 0;
  }

  CachingPool pool_{kCUDA, {device_malloc, device_release}};
  int* flag_ = nullptr;  // device int set by kernels that find a bad index
  std::once_flag cublas_once_;
  cublasHandle_t cublas_ = nullptr;
};

// The backend, made on first use when a GPU is present; never deleted
// (tensors in static storage may be freed after main). nullptr without a GPU.
Backend* load_backend() {
  static CudaBackend* backend = []() -> CudaBackend* {
    if (const char* e = std::getenv("MP_CUDA_TF32")) g_tf32 = e[0] == '1';
    return device_count() > 0 ? new CudaBackend() : nullptr;
  }();
  return backend;
}

// Tells engine/ how to make the backend: nothing touches CUDA until the first
// backend(kCUDA) or has_backend(cuda), never before main. cuda_dep links
// mp_cuda whole so that this object is not dropped by the linker.
struct Registrar {
  Registrar() {
    register_backend_loader(DeviceType::cuda, &load_backend);
    // cuda:N: GPU N (an error naming it when there is no such GPU); without a
    // GPU, nothing: the loader finds none and backend() says so.
    register_device_selector(DeviceType::cuda, [](int index) {
      if (device_count() > 0) use_gpu(index);
    });
  }
} g_registrar;

CudaBackend* loaded() { return static_cast<CudaBackend*>(load_backend()); }

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

void use_gpu(int index) {
  const int n = device_count();
  if (index < 0 || index >= n) fail("no GPU cuda:{}: this process sees {}", index, n);
  check_cuda(cudaSetDevice(index), "cudaSetDevice");
}

void set_tf32(bool on) { g_tf32 = on; }
bool tf32() { return g_tf32; }
size_t cached_bytes() {
  CudaBackend* b = loaded();
  return b ? b->cached_bytes() : 0;
}
void empty_cache() {
  if (CudaBackend* b = loaded()) b->empty_cache();
}

}  // namespace mp::cuda
