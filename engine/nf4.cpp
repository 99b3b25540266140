// NF4 code tables and the ops on NF4 tensors: shapes checked here, bytes
// computed by the device's backend (engine/cpu/nf4.cpp on the CPU).
#include "engine/nf4.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <vector>

#include "engine/backend.h"
#include "engine/error.h"

namespace mp {

const std::array<float, 16>& nf4_code() {
  // The quantiles of N(0, 1) normalised to [-1, 1], 7 below and 8 above an
  // exact 0 (QLoRA's appendix; the constants bitsandbytes uses).
  static const std::array<float, 16> code = {
      -1.0f,          -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
      -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
      0.07958029955625534f,  0.16093020141124725f,  0.24611230194568634f,  0.33791524171829224f,
      0.44070982933044434f,  0.5626170039176941f,   0.7229568362236023f,   1.0f};
  return code;
}

namespace {

// torch.linspace(0.1, 1, n) in f32 as torch computes it on the CPU: the first
// half counted up from the start, the second down from the end, each point
// one fused multiply-add.
std::vector<float> linspace_01_1(int n) {
  const float a = 0.1f, b = 1.f, step = (b - a) / float(n - 1);
  std::vector<float> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    v[size_t(i)] = i < n / 2 ? std::fma(step, float(i), a) : std::fma(-step, float(n - 1 - i), b);
  return v;
}

// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7,
// total_bits=8): for exponents 10^-6 .. 10^0, 2^i fractions (the midpoints of
// linspace(0.1, 1, 2^i + 1)) with both signs, then 0 and 1; sorted. Products
// in f32, as torch computes a Python scalar times an f32 tensor.
std::array<float, 256> make_dynamic_code() {
  std::vector<float> data;
  for (int i = 0; i < 7; ++i) {
    const std::vector<float> bounds = linspace_01_1((1 << i) + 1);
    const float scale = float(std::pow(10.0, i - 6));
    for (int sign : {1, -1})
      for (size_t k = 0; k + 1 < bounds.size(); ++k) data.push_back(float(sign) * scale * ((bounds[k] + bounds[k + 1]) / 2.f));
  }
  data.push_back(0.f);
  data.push_back(1.f);
  assert(data.size() == 256);
  std::sort(data.begin(), data.end());
  std::array<float, 256> code;
  std::copy(data.begin(), data.end(), code.begin());
  return code;
}

void check_matrix(const char* what, const Nf4Tensor& w) {
  if (!w.defined()) fail("{}: undefined nf4 tensor", what);
  if (w.shape.size() != 2) fail("{}: the nf4 weight must be 2-D, got {}", what, shape_str(w.shape));
}

}  // namespace

const std::array<float, 256>& nf4_dynamic_code() {
  static const std::array<float, 256> code = make_dynamic_code();
  return code;
}

int64_t nf4_blocks(int64_t numel) { return (numel + kNf4Block - 1) / kNf4Block; }
int64_t nf4_groups(int64_t numel) { return (nf4_blocks(numel) + kNf4Group - 1) / kNf4Group; }

Nf4Tensor nf4_empty(const Shape& shape, Device d, Tag tag) {
  Nf4Tensor q;
  q.shape = shape;
  const int64_t n = shape_numel(shape);
  q.packed = Tensor::empty({(n + 1) / 2}, DType::u8, d, tag);
  q.absmax = Tensor::empty({nf4_blocks(n)}, DType::u8, d, tag);
  q.nested_absmax = Tensor::empty({nf4_groups(n)}, DType::f32, d, tag);
  return q;
}

Nf4Tensor nf4_quantize(const Tensor& w) {
  if (!w.defined()) fail("nf4_quantize: undefined tensor");
  if (w.dtype() == DType::i32 || w.dtype() == DType::u8)
    fail("nf4_quantize: a {} tensor of shape {} is not floating point", dtype_name(w.dtype()), shape_str(w.shape()));
  Nf4Tensor q = nf4_empty(w.shape(), w.device(), current_tag());
  if (q.numel() == 0) return q;
  Tensor w32 = w.dtype() == DType::f32 ? w.contiguous() : w.to(DType::f32);
  backend(w.device()).nf4_quantize(w32, q);
  return q;
}

Tensor nf4_dequantize(const Nf4Tensor& q) {
  if (!q.defined()) fail("nf4_dequantize: undefined nf4 tensor");
  Tensor out = Tensor::empty(q.shape, DType::f32, q.device());
  if (q.numel() > 0) backend(q.device()).nf4_dequantize(q, out);
  return out;
}

Tensor nf4_matmul(const Tensor& x, const Nf4Tensor& w, bool transpose_w) {
  check_matrix("nf4_matmul", w);
  const int64_t O = w.shape[0], K = w.shape[1];
  const int64_t in = transpose_w ? K : O, out_features = transpose_w ? O : K;
  if (!x.defined() || x.dim() < 1 || x.size(-1) != in)
    fail("nf4_matmul: input {} does not match the nf4 weight {}{}", x.defined() ? shape_str(x.shape()) : "(undefined)",
         shape_str(w.shape), transpose_w ? "^T" : "");
  if (x.dtype() != DType::f32 && x.dtype() != DType::bf16)
    fail("nf4_matmul: the input must be f32 or bf16, got {}", dtype_name(x.dtype()));
  if (x.device() != w.device()) fail("nf4_matmul: input on {}, weight on {}", x.device().str(), w.device().str());
  // The CPU backend (and the meta one that plans it) multiplies a bf16 input
  // with bf16 panels; other backends get f32.
  const bool host = x.device().planned_type() == DeviceType::cpu;
  Tensor x2 = (host ? x : x.to(DType::f32)).contiguous().view({-1, in});  // (N, in)
  Tensor y2 = Tensor::empty({x2.size(0), out_features}, DType::f32, x.device());  // (N, out)
  if (y2.numel() > 0) backend(x.device()).nf4_matmul(x2, w, transpose_w, y2);
  Shape shape = x.shape();
  shape.back() = out_features;
  return y2.view(shape);
}

}  // namespace mp
