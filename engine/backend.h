// The Backend interface: every kernel the engine needs, for one kind of
// device. Ops in engine/ops.h check shapes, allocate outputs and call the
// backend of their inputs' device; a backend only computes.
//
// Conventions for every kernel below:
//  - tensors are contiguous unless the comment says "any strides";
//  - all tensors of one call are on this backend's device;
//  - float maths is done in f32 (f64 where the inputs are f64, for gradient
//    checks); bf16 inputs are widened to f32;
//  - "accumulate" means out += result, otherwise out = result.
// The CPU backend (engine/cpu/) is the reference; the CUDA backend (cuda/)
// registers a loader when built, run on the first use of the GPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/memory.h"

namespace mp {

class Tensor;
struct Nf4Tensor;

enum class UnaryOp : uint8_t { neg, exp, log, sqrt, tanh, relu, gelu, square };
enum class BinaryOp : uint8_t { add, sub, mul, div };
enum class ReduceOp : uint8_t { sum, max };
enum class Distribution : uint8_t { uniform, normal };

// Everything attention needs to know besides q, k, v.
struct AttentionParams {
  float scale = 1.f;          // scores = scale * q k^T
  bool causal = true;         // query t sees keys s <= t + (S - T) (prefix keys always visible)
  const Tensor* key_mask = nullptr;  // optional (B, S) i32: 0 = padding key, masked out
  // Dropout on the probabilities (HF's attn_dropout): P_ts is kept, scaled by
  // 1 / (1 - dropout), when the Philox draw of element (b, h, t, s) of the
  // (B, H, T, S) probability tensor is >= dropout, the mask dropout() would
  // draw on that tensor with this seed. Nothing is stored: backward redraws it.
  float dropout = 0.f;
  uint64_t seed = 0;
  // Optional (B, T) i32, for packed rows (several examples in one row): the
  // segment (example) of each query's own token. Query t sees the sequence's
  // key s only when segment_ids[b, s] == segment_ids[b, t]; the S - T prefix
  // keys stay visible to all. CPU (and meta) only.
  const Tensor* segment_ids = nullptr;
  // Element (b, h, t, s) draws as element dropout_offset + (b, h, t, s) of a
  // larger tensor (data parallelism: these rows are a shard of a bigger batch).
  uint64_t dropout_offset = 0;
  // bf16 (mixed precision, autograd/autocast.h): the products (Q K^T, P V
  // and backward's) read bf16 copies of their operands; scores, softmax
  // statistics and every output stay f32. CPU (and meta); CUDA computes f32.
  DType compute = DType::f32;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // Memory. The tag is for allocators that pool per tag; the Ledger is kept by Storage.
  virtual void* allocate(size_t bytes, Tag tag) = 0;
  virtual void deallocate(void* p, size_t bytes, Tag tag) = 0;
  // Give every block the allocator caches back to the OS (or the driver).
  virtual void empty_cache() {}
  // Host <-> device copies of raw bytes (the CPU backend: memcpy).
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() {}

  // dst = src, any strides, same shape, converting dtype (f32/bf16/f64/i32).
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  virtual void fill(const Tensor& dst, double value) = 0;
  // Counter-based random fill (Philox): element i gets a value that depends
  // only on (seed, i), so results do not depend on threads or devices.
  // uniform: [a, b); normal: mean a, std b.
  virtual void random(const Tensor& dst, Distribution dist, double a, double b, uint64_t seed) = 0;

  // Elementwise. a and b: any strides, already expanded to out's shape.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // out = op(a); a any strides.
  virtual void unary(UnaryOp op, const Tensor& a, const Tensor& out) = 0;
  // gx = gy * op'(x), op'(x) from the input x (or from y = op(x) where cheaper: exp, sqrt, tanh take y).
  virtual void unary_backward(UnaryOp op, const Tensor& x_or_y, const Tensor& gy, const Tensor& gx) = 0;
  // out = alpha * a + beta * out   (axpby; used for gradient accumulation and scaling)
  virtual void axpby(float alpha, const Tensor& a, float beta, const Tensor& out) = 0;
  // dst (..., T) i32: every row start, start + 1, ..., start + T - 1 (default position ids).
  virtual void arange(const Tensor& dst, int64_t start) = 0;
  // OPT's positions from an attention mask: mask (B, S) i32 (0 = padding), out (B, T) i32, T <= S, for the
  // last T keys: out[b, t] = offset - 1 + keep(s) * (the kept keys among 0..s), s = S - T + t.
  virtual void mask_positions(const Tensor& mask, int64_t offset, const Tensor& out) = 0;
  // Gradient clipping, read on the device: grad *= coef where coef = max_norm / (norm + eps)
  // is < 1 (or NaN), computed in f64 from norm (1) f64 and applied as axpby(float(coef), grad, 0, grad).
  virtual void clip_by_norm(const Tensor& grad, const Tensor& norm, double max_norm, double eps) = 0;

  // Reduce a (any strides) over one axis into out (a's shape with that axis 1).
  virtual void reduce(ReduceOp op, const Tensor& a, int axis, const Tensor& out) = 0;
  // sum += the sum of x's squares, in f64 (sum (1) f64; x contiguous, any float dtype):
  // a gradient's squared norm without a widened copy of it.
  virtual void add_sum_of_squares(const Tensor& x, const Tensor& sum) = 0;

  // out (batch, M, N) = alpha * op(a) op(b) + beta * out, where
  // a is (batch or 1, M, K), or (batch or 1, K, M) if trans_a; b likewise (K, N) or (N, K).
  // A batch of 1 on either side is shared by every batch entry (a weight).
  // f32 (BLAS), f64 and bf16 x f32 (bf16 weights) must work.
  virtual void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out,
                      float alpha, float beta) = 0;
  // What runs matmul for operands of dtype dt (both f32, or both bf16) at a
  // typical layer shape, e.g. "onednn brg:avx512_core_bf16", for bench and info.
  virtual std::string gemm_implementation(DType dt) const = 0;

  // Along the last axis of x (N, C): y = softmax(x) or log_softmax(x).
  virtual void softmax(const Tensor& x, const Tensor& y, bool log) = 0;
  // gx = softmax backward from y and gy.
  virtual void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) = 0;

  // x (N, C), w (C), b (C) (b may be undefined) -> y (N, C); saves mean (N), rstd (N).
  virtual void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& y,
                          const Tensor& mean, const Tensor& rstd) = 0;
  // gx (N, C) = ...; gw, gb accumulate (each may be undefined: not needed). gx may be undefined.
  virtual void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& gx, const Tensor& gw, const Tensor& gb) = 0;

  // ids (N) i32, table (V, C) -> out (N, C). Ids out of range are an mp::Error.
  virtual void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) = 0;
  // gtable (V, C) accumulates gout (N, C) rows at ids (scatter-add), except
  // rows whose id is padding_idx (torch's padding_idx; -1: none).
  virtual void embedding_backward(const Tensor& ids, const Tensor& gout, const Tensor& gtable, int padding_idx) = 0;

  // Fused softmax + cross-entropy, never storing probabilities for all rows:
  // logits (N, V), targets (N) i32 (ignore_index rows give loss 0) -> losses (N)
  // and lse (N), each row's log-sum-exp, which the backward reads (0 in ignored rows).
  virtual void cross_entropy(const Tensor& logits, const Tensor& targets, int ignore_index, const Tensor& losses,
                             const Tensor& lse) = 0;
  // glogits (N, V) = gscale * (exp(logits - lse) - onehot(target)), 0 for ignored rows;
  // lse (N) is the forward's, so the softmax costs one pass over the logits;
  // gscale (1) f32 stays on the device (the loss's incoming gradient over the count).
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                                      int ignore_index, const Tensor& gscale, const Tensor& glogits) = 0;
  // out (1) f32 = 1 / (the targets (N) i32 that are not ignore_index), 0 if
  // none: the scale of the loss's mean, counted on the device.
  virtual void inverse_target_count(const Tensor& targets, int ignore_index, const Tensor& out) = 0;

  // out = x * keep / (1 - p), keep from Philox(seed, element index) so that
  // the same call on gy gives the backward (no mask is stored).
  virtual void dropout(const Tensor& x, float p, uint64_t seed, uint64_t offset, const Tensor& out) = 0;

  // Fused attention. q (B, H, T, D), k and v (B, H, S, D) with S >= T (the
  // first S - T keys are a prefix) -> out (B, H, T, D), lse (B, H, T) the
  // log-sum-exp of each query's scores (saved for backward).
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p,
                         const Tensor& out, const Tensor& lse) = 0;
  // gq, gk, gv (each may be undefined) from gout, recomputing probabilities from lse.
  virtual void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                  const Tensor& lse, const Tensor& gout, const AttentionParams& p,
                                  const Tensor& gq, const Tensor& gk, const Tensor& gv) = 0;

  // Fused AdamW (PyTorch semantics: decoupled decay, bias correction) on
  // param, grad, m, v (all same shape, f32). step counts from 1.
  virtual void adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int64_t step) = 0;

  // NF4 weights (engine/nf4.h); q's tensors are allocated by the caller. A
  // backend without them says so (mp::Error naming the device).
  // w (any shape, f32) -> q's codes, absmax, nested absmax and offset.
  virtual void nf4_quantize(const Tensor& w, Nf4Tensor& q);
  // q -> out (q.shape, f32).
  virtual void nf4_dequantize(const Nf4Tensor& q, const Tensor& out);
  // W = q (O, K): out (N, O) = x (N, K) W^T if transpose_w, else out (N, K) = x (N, O) W.
  virtual void nf4_matmul(const Tensor& x, const Nf4Tensor& w, bool transpose_w, const Tensor& out);
};

// The backend of a device; mp::Error if none is registered (e.g. CUDA not built or no GPU).
Backend& backend(Device d);
void register_backend(DeviceType t, Backend* b);
// A loader makes a backend on the first backend() or has_backend() of its
// device type (nullptr: no such device), so that registering one at static
// initialisation costs nothing (cuda/ creates no CUDA context before main).
void register_backend_loader(DeviceType t, Backend* (*load)());
bool has_backend(DeviceType t);
// A selector makes device index N of its type the process's current one
// (CUDA: cudaSetDevice); the first backend() of the type runs it with the
// device's index before the loader, so `cuda:N` makes its backend on GPU N.
// One GPU per process: later indices reuse that backend.
void register_device_selector(DeviceType t, void (*select)(int index));

}  // namespace mp
