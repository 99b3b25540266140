// Tensor ops without gradients: check shapes (mp::Error naming them),
// allocate the output under the current tag, call the device's backend.
#include "engine/ops.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace mp::ops {

namespace {

Backend& backend_of(const Tensor& t) { return backend(t.device()); }

void check_defined(const char* what, const Tensor& t) {
  if (!t.defined()) fail("{}: undefined tensor", what);
}

void check_same_device(const char* what, const Tensor& a, const Tensor& b) {
  if (a.device() != b.device()) fail("{}: tensors on {} and {}", what, a.device().str(), b.device().str());
}

void check_same_dtype(const char* what, const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype()) fail("{}: dtypes {} and {} differ", what, dtype_name(a.dtype()), dtype_name(b.dtype()));
}

void check_same_shape(const char* what, const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) fail("{}: shapes {} and {} differ", what, shape_str(a.shape()), shape_str(b.shape()));
}

// A gradient and the tensor it belongs to: both defined, on one device, of one dtype and shape.
void check_alike(const char* what, const Tensor& a, const Tensor& b) {
  check_defined(what, a);
  check_defined(what, b);
  check_same_device(what, a, b);
  check_same_dtype(what, a, b);
  check_same_shape(what, a, b);
}

int wrap_axis(const char* what, int axis, int dim) {
  int w = axis < 0 ? axis + dim : axis;
  if (w < 0 || w >= dim) fail("{}: axis {} out of range for {} dimensions", what, axis, dim);
  return w;
}

// The shape without its last axis: (..., C) -> (...).
Shape leading(const Shape& s) { return Shape(s.begin(), s.end() - 1); }

// The dtype of saved row statistics (layer norm's mean and rstd, attention's
// log-sum-exp): f32, never bf16, whose rounding would bias every gradient;
// f64 for f64 inputs (gradient checks).
DType stats_dtype(const Tensor& x) { return x.dtype() == DType::f64 ? DType::f64 : DType::f32; }

}  // namespace

// ---------------------------------------------------------------- elementwise

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  check_defined("binary", a);
  check_defined("binary", b);
  check_same_device("binary", a, b);
  check_same_dtype("binary", a, b);
  Shape shape = broadcast_shapes(a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  backend_of(a).binary(op, a.expand(shape), b.expand(shape), out);
  return out;
}
Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }

Tensor scale(const Tensor& a, float s) {
  check_defined("scale", a);
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  backend_of(a).axpby(s, a, 0.f, out);
  return out;
}

Tensor unary(UnaryOp op, const Tensor& a) {
  check_defined("unary", a);
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  backend_of(a).unary(op, a, out);
  return out;
}

Tensor unary_backward(UnaryOp op, const Tensor& x_or_y, const Tensor& gy) {
  check_alike("unary_backward", x_or_y, gy);
  Tensor gx = Tensor::empty(gy.shape(), gy.dtype(), gy.device());
  backend_of(gy).unary_backward(op, x_or_y, gy, gx);
  return gx;
}

// out = alpha * a + beta * out; a may broadcast to out's shape.
void axpby(float alpha, const Tensor& a, float beta, const Tensor& out) {
  check_defined("axpby", a);
  check_defined("axpby", out);
  check_same_device("axpby", a, out);
  check_same_dtype("axpby", a, out);
  if (broadcast_shapes(a.shape(), out.shape()) != out.shape())
    fail("axpby: {} does not broadcast to {}", shape_str(a.shape()), shape_str(out.shape()));
  backend_of(out).axpby(alpha, a.expand(out.shape()), beta, out);
}

void fill(const Tensor& t, double value) {
  check_defined("fill", t);
  backend_of(t).fill(t, value);
}

void random(const Tensor& t, Distribution dist, double a, double b, uint64_t seed) {
  check_defined("random", t);
  backend_of(t).random(t, dist, a, b, seed);
}

Tensor arange(const Shape& shape, int64_t start, Device d) {
  if (shape.empty()) fail("arange: the shape must have a last axis");
  Tensor out = Tensor::empty(shape, DType::i32, d);
  backend(d).arange(out, start);
  return out;
}

Tensor mask_positions(const Tensor& mask, int64_t T, int64_t offset) {
  check_defined("mask_positions", mask);
  if (mask.dtype() != DType::i32 || mask.dim() != 2 || T < 0 || T > mask.size(1))
    fail("mask_positions: the mask must be (B, S) i32 with S >= T = {}, not {} {}", T, shape_str(mask.shape()),
         dtype_name(mask.dtype()));
  Tensor out = Tensor::empty({mask.size(0), T}, DType::i32, mask.device());
  backend_of(mask).mask_positions(mask.contiguous(), offset, out);
  return out;
}

void clip_by_norm(const Tensor& grad, const Tensor& norm, double max_norm, double eps) {
  check_defined("clip_by_norm", grad);
  check_same_device("clip_by_norm", grad, norm);
  backend_of(grad).clip_by_norm(grad, norm, max_norm, eps);
}

// ----------------------------------------------------------------- reductions

static Tensor reduce(ReduceOp op, const char* what, const Tensor& a, int axis, bool keepdim) {
  check_defined(what, a);
  axis = wrap_axis(what, axis, a.dim());
  Shape kept = a.shape();
  kept[axis] = 1;
  Tensor out = Tensor::empty(kept, a.dtype(), a.device());
  backend_of(a).reduce(op, a, axis, out);
  if (keepdim) return out;
  Shape dropped = a.shape();
  dropped.erase(dropped.begin() + axis);
  return out.view(dropped);
}

Tensor sum(const Tensor& a, int axis, bool keepdim) { return reduce(ReduceOp::sum, "sum", a, axis, keepdim); }
Tensor max(const Tensor& a, int axis, bool keepdim) { return reduce(ReduceOp::max, "max", a, axis, keepdim); }
Tensor mean(const Tensor& a, int axis, bool keepdim) {
  Tensor s = sum(a, axis, keepdim);
  const int64_t n = a.size(wrap_axis("mean", axis, a.dim()));
  if (n == 0) fail("mean over an empty axis of shape {}", shape_str(a.shape()));
  backend_of(s).axpby(1.f / float(n), s, 0.f, s);
  return s;
}

Tensor sum_all(const Tensor& a) {
  check_defined("sum_all", a);
  Tensor flat = a.reshape({a.numel()});
  Tensor out = Tensor::empty({1}, a.dtype(), a.device());
  backend_of(a).reduce(ReduceOp::sum, flat, 0, out);
  return out;
}

void add_sum_of_squares(const Tensor& x, const Tensor& sum) {
  check_defined("add_sum_of_squares", x);
  check_same_device("add_sum_of_squares", x, sum);
  if (sum.shape() != Shape{1} || sum.dtype() != DType::f64)
    fail("add_sum_of_squares: sum {} {} must be (1) f64", shape_str(sum.shape()), dtype_name(sum.dtype()));
  backend_of(x).add_sum_of_squares(x.contiguous(), sum);
}

// Sum the axes that broadcasting stretched: leading extra axes, and axes where
// `shape` has 1 and a does not.
Tensor sum_to(const Tensor& a, const Shape& shape) {
  check_defined("sum_to", a);
  if (a.shape() == shape) return a;
  if (shape.size() > a.shape().size() || broadcast_shapes(a.shape(), shape) != a.shape())
    fail("sum_to: {} does not broadcast to {}", shape_str(shape), shape_str(a.shape()));
  const int lead = a.dim() - int(shape.size());
  Tensor t = a;
  for (int d = 0; d < a.dim(); ++d) {
    const bool stretched = d < lead || (shape[d - lead] == 1 && a.size(d) != 1);
    if (stretched) {
      Shape kept = t.shape();
      kept[d] = 1;
      Tensor out = Tensor::empty(kept, t.dtype(), t.device());
      backend_of(t).reduce(ReduceOp::sum, t, d, out);
      t = out;
    }
  }
  return t.reshape(shape);
}

// ------------------------------------------------------------------- matmul

namespace {

// The checked sizes of a @ b: batch shape, M, K, N, and how many batch
// entries each side has (1 = shared).
struct MatmulPlan {
  Shape out_shape;
  int64_t batch = 1, M = 0, K = 0, N = 0, batch_a = 1, batch_b = 1;
};

MatmulPlan plan_matmul(const Tensor& a, bool ta, const Tensor& b, bool tb) {
  auto desc = [](const Tensor& t, bool tr) { return shape_str(t.shape()) + (tr ? "^T" : ""); };
  if (a.dim() < 2 || b.dim() < 2) fail("matmul: {} @ {}: both need at least 2 dimensions", desc(a, ta), desc(b, tb));
  check_same_device("matmul", a, b);
  MatmulPlan p;
  const int64_t ar = a.size(-2), ac = a.size(-1), br = b.size(-2), bc = b.size(-1);
  p.M = ta ? ac : ar;
  p.K = ta ? ar : ac;
  const int64_t kb = tb ? bc : br;
  p.N = tb ? br : bc;
  if (p.K != kb)
    fail("matmul: {} @ {}: inner dimensions {} and {} differ", desc(a, ta), desc(b, tb), p.K, kb);
  const Shape ba = leading(leading(a.shape())), bb = leading(leading(b.shape()));
  Shape batch;
  if (bb.empty()) {
    batch = ba;  // b shared
  } else if (ba.empty()) {
    batch = bb;  // a shared
  } else if (ba == bb) {
    batch = ba;
  } else {
    fail("matmul: {} @ {}: batch dimensions {} and {} differ", desc(a, ta), desc(b, tb), shape_str(ba), shape_str(bb));
  }
  p.batch = shape_numel(batch);
  p.batch_a = shape_numel(ba);
  p.batch_b = shape_numel(bb);
  p.out_shape = batch;
  p.out_shape.push_back(p.M);
  p.out_shape.push_back(p.N);
  return p;
}

DType matmul_out_dtype(const Tensor& a, const Tensor& b) {
  if (a.dtype() == DType::f64 && b.dtype() == DType::f64) return DType::f64;
  return DType::f32;  // f32, or bf16 inputs widened to f32
}

uint64_t flops_done = 0;

void run_matmul(const MatmulPlan& p, const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& out, float alpha,
                float beta) {
  flops_done += uint64_t(2 * p.batch * p.M * p.N * p.K);
  Tensor a3 = a.contiguous().view({p.batch_a, a.size(-2), a.size(-1)});
  Tensor b3 = b.contiguous().view({p.batch_b, b.size(-2), b.size(-1)});
  Tensor o3 = out.view({p.batch, p.M, p.N});
  backend_of(out).matmul(a3, ta, b3, tb, o3, alpha, beta);
}

}  // namespace

uint64_t matmul_flops() { return flops_done; }

std::string gemm_implementation(DType dt, Device d) { return backend(d).gemm_implementation(dt); }

Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  check_defined("matmul", a);
  check_defined("matmul", b);
  MatmulPlan p = plan_matmul(a, ta, b, tb);
  Tensor out = Tensor::empty(p.out_shape, matmul_out_dtype(a, b), a.device());
  run_matmul(p, a, ta, b, tb, out, 1.f, 0.f);
  return out;
}

void matmul_into(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& out, float alpha, float beta) {
  check_defined("matmul_into", a);
  check_defined("matmul_into", b);
  check_defined("matmul_into", out);
  MatmulPlan p = plan_matmul(a, ta, b, tb);
  if (out.shape() != p.out_shape)
    fail("matmul_into: {} @ {} gives {}, but out is {}", shape_str(a.shape()), shape_str(b.shape()),
         shape_str(p.out_shape), shape_str(out.shape()));
  if (!out.is_contiguous()) fail("matmul_into: out {} must be contiguous", shape_str(out.shape()));
  check_same_device("matmul_into", a, out);
  run_matmul(p, a, ta, b, tb, out, alpha, beta);
}

// ------------------------------------------------------------ row-wise ops

Tensor softmax(const Tensor& x) {
  check_defined("softmax", x);
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of(x).softmax(xc, y, false);
  return y;
}

Tensor log_softmax(const Tensor& x) {
  check_defined("log_softmax", x);
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of(x).softmax(xc, y, true);
  return y;
}

Tensor softmax_backward(const Tensor& y, const Tensor& gy, bool log) {
  check_alike("softmax_backward", y, gy);
  Tensor gx = Tensor::empty(y.shape(), y.dtype(), y.device());
  backend_of(y).softmax_backward(y.contiguous(), gy.contiguous(), gx, log);
  return gx;
}

LayerNormOut layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps) {
  check_defined("layer_norm", x);
  if (x.dim() < 1) fail("layer_norm: input must have at least one axis");
  const int64_t C = x.size(-1);
  auto check_param = [&](const char* name, const Tensor& t) {
    if (!t.defined()) return;
    if (t.shape() != Shape{C})
      fail("layer_norm: {} {} should be ({}) for input {}", name, shape_str(t.shape()), C, shape_str(x.shape()));
    check_same_dtype("layer_norm", x, t);
    check_same_device("layer_norm", x, t);
  };
  check_param("weight", w);
  check_param("bias", b);
  LayerNormOut r;
  r.y = Tensor::empty(x.shape(), x.dtype(), x.device());
  r.mean = Tensor::empty(leading(x.shape()), stats_dtype(x), x.device());
  r.rstd = Tensor::empty(leading(x.shape()), stats_dtype(x), x.device());
  backend_of(x).layer_norm(x.contiguous(), w.defined() ? w.contiguous() : w, b.defined() ? b.contiguous() : b, eps,
                           r.y, r.mean, r.rstd);
  return r;
}

void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                         const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  check_same_device("layer_norm_backward", gy, x);
  backend_of(gy).layer_norm_backward(gy, x, w, mean, rstd, gx, gw, gb);
}

Tensor embedding(const Tensor& ids, const Tensor& table) {
  check_defined("embedding", ids);
  check_defined("embedding", table);
  if (ids.dtype() != DType::i32) fail("embedding: ids must be i32, got {}", dtype_name(ids.dtype()));
  if (table.dim() != 2) fail("embedding: table must be (V, C), got {}", shape_str(table.shape()));
  check_same_device("embedding", ids, table);
  Shape shape = ids.shape();
  shape.push_back(table.size(1));
  const DType dt = table.dtype() == DType::bf16 ? DType::f32 : table.dtype();
  Tensor out = Tensor::empty(shape, dt, table.device());
  backend_of(table).embedding(ids.contiguous(), table.contiguous(), out);
  return out;
}

void embedding_backward(const Tensor& ids, const Tensor& gout, const Tensor& gtable, int padding_idx) {
  check_same_device("embedding_backward", gout, gtable);
  backend_of(gout).embedding_backward(ids, gout, gtable, padding_idx);
}

void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, int ignore_index,
                            const Tensor& gscale, const Tensor& glogits) {
  check_same_device("cross_entropy_backward", logits, glogits);
  check_same_device("cross_entropy_backward", logits, lse);
  check_same_device("cross_entropy_backward", logits, gscale);
  backend_of(logits).cross_entropy_backward(logits, targets, lse, ignore_index, gscale, glogits);
}

Tensor inverse_target_count(const Tensor& targets, int ignore_index) {
  check_defined("inverse_target_count", targets);
  Tensor out = Tensor::empty({1}, DType::f32, targets.device());
  backend_of(targets).inverse_target_count(targets.contiguous(), ignore_index, out);
  return out;
}

CrossEntropyRows cross_entropy_rows(const Tensor& logits, const Tensor& targets, int ignore_index) {
  check_defined("cross_entropy", logits);
  check_defined("cross_entropy", targets);
  if (logits.dim() != 2) fail("cross_entropy: logits must be (N, V), got {}", shape_str(logits.shape()));
  if (targets.shape() != Shape{logits.size(0)})
    fail("cross_entropy: targets {} for logits {}: should be ({})", shape_str(targets.shape()),
         shape_str(logits.shape()), logits.size(0));
  if (targets.dtype() != DType::i32) fail("cross_entropy: targets must be i32, got {}", dtype_name(targets.dtype()));
  check_same_device("cross_entropy", logits, targets);
  CrossEntropyRows rows{Tensor::empty({logits.size(0)}, logits.dtype(), logits.device()),
                        Tensor::empty({logits.size(0)}, logits.dtype(), logits.device())};
  backend_of(logits).cross_entropy(logits.contiguous(), targets.contiguous(), ignore_index, rows.losses, rows.lse);
  return rows;
}

Tensor dropout(const Tensor& x, float p, uint64_t seed, uint64_t offset) {
  check_defined("dropout", x);
  if (!(p >= 0.f && p < 1.f)) fail("dropout: probability {} is not in [0, 1)", p);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of(x).dropout(x.contiguous(), p, seed, offset, out);
  return out;
}

// An optional per-token input of attention (key_mask (B, S), segment_ids
// (B, T)): checked to be i32 of that shape on q's device, then contiguous.
static Tensor attention_row_input(const char* name, const Tensor& t, int64_t B, int64_t n, const Tensor& q) {
  if (t.shape() != Shape{B, n} || t.dtype() != DType::i32)
    fail("attention: {} {} {} should be i32 ({}, {})", name, shape_str(t.shape()), dtype_name(t.dtype()), B, n);
  if (t.device() != q.device())
    fail("attention: {} is on {}, q, k, v on {}: build it on the model's device", name, t.device().str(),
         q.device().str());
  return t.contiguous();
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& gout, const AttentionParams& p, const Tensor& gq, const Tensor& gk,
                        const Tensor& gv) {
  check_same_device("attention_backward", q, gout);
  backend_of(q).attention_backward(q, k, v, out, lse, gout, p, gq, gk, gv);
}

void adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr, float beta1,
           float beta2, float eps, float weight_decay, int64_t step) {
  check_same_device("adamw", param, grad);
  backend_of(param).adamw(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step);
}

AttentionOut attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) {
  check_defined("attention", q);
  check_defined("attention", k);
  check_defined("attention", v);
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4 || k.shape() != v.shape() || q.size(0) != k.size(0) ||
      q.size(1) != k.size(1) || q.size(3) != k.size(3))
    fail("attention: q {}, k {}, v {} should be (B, H, T, D), (B, H, S, D), (B, H, S, D)", shape_str(q.shape()),
         shape_str(k.shape()), shape_str(v.shape()));
  if (k.size(2) < q.size(2))
    fail("attention: {} keys for {} queries (q {}, k {}): need S >= T", k.size(2), q.size(2), shape_str(q.shape()),
         shape_str(k.shape()));
  check_same_dtype("attention", q, k);
  check_same_dtype("attention", q, v);
  check_same_device("attention", q, k);
  check_same_device("attention", q, v);
  if (!(p.dropout >= 0.f && p.dropout < 1.f)) fail("attention: dropout must be in [0, 1), not {}", p.dropout);
  AttentionParams params = p;
  Tensor mask;
  if (p.key_mask) {
    mask = attention_row_input("key_mask", *p.key_mask, q.size(0), k.size(2), q);
    params.key_mask = &mask;
  }
  Tensor segments;
  if (p.segment_ids) {
    segments = attention_row_input("segment_ids", *p.segment_ids, q.size(0), q.size(2), q);
    if (q.device().planned_type() != DeviceType::cpu)
      fail("attention: segment_ids (packed rows) are supported on the cpu only, not on {}; train without --packing",
           q.device().str());
    params.segment_ids = &segments;
  }
  AttentionOut r;
  r.out = Tensor::empty(q.shape(), q.dtype(), q.device());
  r.lse = Tensor::empty({q.size(0), q.size(1), q.size(2)}, stats_dtype(q), q.device());
  backend_of(q).attention(q.contiguous(), k.contiguous(), v.contiguous(), params, r.out, r.lse);
  return r;
}

// --------------------------------------------------------------------- misc

Tensor cat(const std::vector<Tensor>& parts, int axis) {
  if (parts.empty()) fail("cat: no tensors");
  const Tensor& first = parts[0];
  check_defined("cat", first);
  axis = wrap_axis("cat", axis, first.dim());
  Shape shape = first.shape();
  shape[axis] = 0;
  for (const Tensor& t : parts) {
    check_defined("cat", t);
    bool ok = t.dim() == first.dim();
    for (int d = 0; ok && d < t.dim(); ++d) ok = d == axis || t.size(d) == first.size(d);
    if (!ok) fail("cat along axis {}: shapes {} and {} do not match", axis, shape_str(first.shape()), shape_str(t.shape()));
    check_same_dtype("cat", first, t);
    check_same_device("cat", first, t);
    shape[axis] += t.size(axis);
  }
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  int64_t at = 0;
  for (const Tensor& t : parts) {
    if (t.size(axis) > 0) backend_of(out).copy(t, out.narrow(axis, at, t.size(axis)));
    at += t.size(axis);
  }
  return out;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  check_defined("max_abs_diff", a);
  check_defined("max_abs_diff", b);
  check_same_shape("max_abs_diff", a, b);
  Tensor x = a.to(kCPU).to(DType::f64).contiguous(), y = b.to(kCPU).to(DType::f64).contiguous();
  const double* px = x.data<double>();
  const double* py = y.data<double>();
  double m = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    double d = std::abs(px[i] - py[i]);
    if (std::isnan(d)) return d;
    m = std::max(m, d);
  }
  return m;
}

}  // namespace mp::ops
