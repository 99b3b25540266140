// Elementwise kernels: copy (with dtype conversion), fill, arange, mask positions, binary,
// unary and its backward, axpby and the gradient clip built on it. Every operand may have any strides (transposed views,
// broadcasts with stride 0); StridedLayout (strided.h) turns the walk into
// rows and each op below is one small lambda applied along a row.
#include <cmath>
#include <cstring>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/fast_math.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/strided.h"

namespace mp::cpu {

namespace {

// out = f() for every element of out.
template <class T, class F>
void map0(const Tensor& out, F f) {
  StridedLayout<1> L(out.shape(), {&out.strides()});
  T* po = out.data<T>();
  for_each_row(L, [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& st) {
    T* o = po + off[0];
    if (st[0] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = f();
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = f();
    }
  });
}

// out = f(a), elementwise; a and out have out's shape.
template <class TA, class TO, class F>
void map1(const Tensor& a, const Tensor& out, F f) {
  StridedLayout<2> L(out.shape(), {&a.strides(), &out.strides()});
  const TA* pa = static_cast<const TA*>(a.raw());
  TO* po = static_cast<TO*>(out.raw());
  for_each_row(L, [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
    const TA* x = pa + off[0];
    TO* o = po + off[1];
    if (st[0] == 1 && st[1] == 1) {  // the common, vectorisable case
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[1]] = f(x[i * st[0]]);
    }
  });
}

// out = f(a, b), elementwise; a, b and out have out's shape.
template <class T, class F>
void map2(const Tensor& a, const Tensor& b, const Tensor& out, F f) {
  StridedLayout<3> L(out.shape(), {&a.strides(), &b.strides(), &out.strides()});
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* po = out.data<T>();
  for_each_row(L, [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& st) {
    const T* x = pa + off[0];
    const T* y = pb + off[1];
    T* o = po + off[2];
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {  // a row plus a broadcast scalar
      const T y0 = y[0];
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y0);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[2]] = f(x[i * st[0]], y[i * st[1]]);
    }
  });
}

void check_same_shape(const char* what, const Tensor& a, const Tensor& out) {
  if (a.shape() != out.shape()) fail("{}: input {} and output {} differ", what, shape_str(a.shape()), shape_str(out.shape()));
}

void check_same_dtype(const char* what, const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype())
    fail("{}: dtypes {} and {} differ", what, dtype_name(a.dtype()), dtype_name(b.dtype()));
}

// GELU, tanh approximation (GPT-2's gelu_new):
//   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
// computed as x s with s = 0.5 (1 + tanh u) = 1 / (1 + exp(-2u)): one exp
// and one division per element, no sign folding.
template <class T>
MP_ALWAYS_INLINE T gelu_gate(T x) {  // s
  const T c = T(0.7978845608028654);  // sqrt(2/pi)
  const T u = c * (x + T(0.044715) * x * x * x);
  return T(1) / (T(1) + fast_exp(T(-2) * u));
}
template <class T>
MP_ALWAYS_INLINE T gelu(T x) {
  return x * gelu_gate(x);
}
// d gelu / dx = s + x s (1 - s) 2 du/dx,  du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
// (0.5 (1 - tanh^2 u) = 2 s (1 - s)).
template <class T>
MP_ALWAYS_INLINE T gelu_grad(T x) {
  const T c = T(0.7978845608028654);
  const T s = gelu_gate(x);
  return s + T(2) * x * s * (T(1) - s) * c * (T(1) + T(3 * 0.044715) * x * x);
}

}  // namespace

void copy(const Tensor& src, const Tensor& dst) {
  check_same_shape("copy", src, dst);
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    if (src.raw() != dst.raw()) std::memmove(dst.raw(), src.raw(), src.nbytes());
    return;
  }
  visit_any(src.dtype(), [&]<class S>() {
    visit_any(dst.dtype(), [&]<class D>() { map1<S, D>(src, dst, [](S x) { return convert<D>(x); }); });
  });
}

void fill(const Tensor& dst, double value) {
  visit_any(dst.dtype(), [&]<class T>() {
    const T v = convert<T>(value);
    map0<T>(dst, [v] { return v; });
  });
}

void arange(const Tensor& dst, int64_t start) {
  if (dst.dtype() != DType::i32 || !dst.is_contiguous() || dst.dim() == 0)
    fail("arange: dst must be contiguous (..., T) i32, not {} {}", shape_str(dst.shape()), dtype_name(dst.dtype()));
  const int64_t T = dst.size(dst.dim() - 1), rows = T > 0 ? dst.numel() / T : 0;
  int32_t* p = dst.data<int32_t>();  // (rows, T)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < T; ++t) p[r * T + t] = int32_t(start + t);
}

void mask_positions(const Tensor& mask, int64_t offset, const Tensor& out) {
  const int64_t B = mask.size(0), S = mask.size(1), T = out.size(1);
  const int32_t* m = mask.data<int32_t>();  // (B, S)
  int32_t* p = out.data<int32_t>();         // (B, T)
  for (int64_t b = 0; b < B; ++b) {
    int64_t kept = 0;
    for (int64_t s = 0; s < S; ++s) {
      const int64_t keep = m[b * S + s] != 0;
      kept += keep;
      if (s >= S - T) p[b * T + (s - (S - T))] = int32_t(offset - 1 + keep * kept);
    }
  }
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  check_same_shape("binary", a, out);
  check_same_shape("binary", b, out);
  check_same_dtype("binary", a, out);
  check_same_dtype("binary", b, out);
  visit_float(out.dtype(), "binary", [&]<class T>() {
    switch (op) {
      case BinaryOp::add: return map2<T>(a, b, out, [](T x, T y) { return x + y; });
      case BinaryOp::sub: return map2<T>(a, b, out, [](T x, T y) { return x - y; });
      case BinaryOp::mul: return map2<T>(a, b, out, [](T x, T y) { return x * y; });
      case BinaryOp::div: return map2<T>(a, b, out, [](T x, T y) { return x / y; });
    }
  });
}

void unary(UnaryOp op, const Tensor& a, const Tensor& out) {
  check_same_shape("unary", a, out);
  check_same_dtype("unary", a, out);
  visit_float(out.dtype(), "unary", [&]<class T>() {
    switch (op) {
      case UnaryOp::neg: return map1<T, T>(a, out, [](T x) { return -x; });
      case UnaryOp::exp: return map1<T, T>(a, out, [](T x) { return fast_exp(x); });
      case UnaryOp::log: return map1<T, T>(a, out, [](T x) { return std::log(x); });
      case UnaryOp::sqrt: return map1<T, T>(a, out, [](T x) { return std::sqrt(x); });
      case UnaryOp::tanh: return map1<T, T>(a, out, [](T x) { return std::tanh(x); });
      case UnaryOp::relu: return map1<T, T>(a, out, [](T x) { return x > T(0) ? x : T(0); });
      case UnaryOp::gelu: return map1<T, T>(a, out, [](T x) MP_ALWAYS_LAMBDA { return gelu(x); });
      case UnaryOp::square: return map1<T, T>(a, out, [](T x) { return x * x; });
    }
  });
}

// gx = gy * op'(.) where exp, sqrt and tanh take their output y, the rest their input x.
void unary_backward(UnaryOp op, const Tensor& x_or_y, const Tensor& gy, const Tensor& gx) {
  check_same_shape("unary_backward", x_or_y, gx);
  check_same_shape("unary_backward", gy, gx);
  check_same_dtype("unary_backward", x_or_y, gx);
  check_same_dtype("unary_backward", gy, gx);
  visit_float(gx.dtype(), "unary_backward", [&]<class T>() {
    const Tensor& v = x_or_y;
    switch (op) {
      case UnaryOp::neg: return map2<T>(v, gy, gx, [](T, T g) { return -g; });
      case UnaryOp::exp: return map2<T>(v, gy, gx, [](T y, T g) { return g * y; });
      case UnaryOp::log: return map2<T>(v, gy, gx, [](T x, T g) { return g / x; });
      case UnaryOp::sqrt: return map2<T>(v, gy, gx, [](T y, T g) { return g * T(0.5) / y; });
      case UnaryOp::tanh: return map2<T>(v, gy, gx, [](T y, T g) { return g * (T(1) - y * y); });
      case UnaryOp::relu: return map2<T>(v, gy, gx, [](T x, T g) { return x > T(0) ? g : T(0); });
      case UnaryOp::gelu: return map2<T>(v, gy, gx, [](T x, T g) MP_ALWAYS_LAMBDA { return g * gelu_grad(x); });
      case UnaryOp::square: return map2<T>(v, gy, gx, [](T x, T g) { return g * T(2) * x; });
    }
  });
}

// out = alpha * a + beta * out; with beta == 0, out is not read (so NaN garbage in it is harmless).
void axpby(float alpha, const Tensor& a, float beta, const Tensor& out) {
  check_same_shape("axpby", a, out);
  check_same_dtype("axpby", a, out);
  visit_float(out.dtype(), "axpby", [&]<class T>() {
    const T al = T(alpha), be = T(beta);
    if (beta == 0.f) return map1<T, T>(a, out, [al](T x) { return al * x; });
    map2<T>(a, out, out, [al, be](T x, T o) { return al * x + be * o; });
  });
}

// grad *= max_norm / (norm + eps) where that is < 1 or NaN; norm (1) f64 is read here, in the kernel.
void clip_by_norm(const Tensor& grad, const Tensor& norm, double max_norm, double eps) {
  if (norm.numel() != 1 || norm.dtype() != DType::f64)
    fail("clip_by_norm: norm must be (1) f64, not {} {}", shape_str(norm.shape()), dtype_name(norm.dtype()));
  const double coef = max_norm / (*norm.data<double>() + eps);
  if (coef < 1.0 || std::isnan(coef)) axpby(float(coef), grad, 0.f, grad);
}

}  // namespace mp::cpu
