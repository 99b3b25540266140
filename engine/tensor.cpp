#include "engine/tensor.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <numeric>

#include "engine/backend.h"
#include "engine/error.h"

namespace mp {

int64_t shape_numel(const Shape& s) { return std::accumulate(s.begin(), s.end(), int64_t{1}, std::multiplies<>()); }

std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (int i = int(shape.size()) - 1; i >= 0; --i) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()));
  for (size_t i = 0; i < out.size(); ++i) {
    int64_t da = i < out.size() - a.size() ? 1 : a[i - (out.size() - a.size())];
    int64_t db = i < out.size() - b.size() ? 1 : b[i - (out.size() - b.size())];
    if (da != db && da != 1 && db != 1) fail("shapes {} and {} do not broadcast", shape_str(a), shape_str(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor::Tensor(std::shared_ptr<Storage> s, Shape shape, Shape strides, int64_t offset, DType dt)
    : storage_(std::move(s)), shape_(std::move(shape)), strides_(std::move(strides)), offset_(offset), dtype_(dt) {}

Tensor Tensor::empty(const Shape& shape, DType dt, Device d, Tag tag) {
  for (int64_t n : shape)
    if (n < 0) fail("negative dimension in shape {}", shape_str(shape));
  // At least one byte, so that every defined tensor has real storage.
  size_t bytes = std::max<size_t>(1, size_t(shape_numel(shape)) * dtype_size(dt));
  return Tensor(Storage::allocate(bytes, d, tag), shape, contiguous_strides(shape), 0, dt);
}

Tensor Tensor::zeros(const Shape& shape, DType dt, Device d, Tag tag) { return full(shape, 0.0, dt, d, tag); }

Tensor Tensor::full(const Shape& shape, double value, DType dt, Device d, Tag tag) {
  Tensor t = empty(shape, dt, d, tag);
  backend(d).fill(t, value);
  return t;
}

template <class T>
static Tensor from_host(const std::vector<T>& v, const Shape& shape, Tag tag) {
  if (int64_t(v.size()) != shape_numel(shape))
    fail("{} values do not fill shape {}", v.size(), shape_str(shape));
  Tensor t = Tensor::empty(shape, dtype_of<T>(), kCPU, tag);
  std::memcpy(t.raw(), v.data(), v.size() * sizeof(T));
  return t;
}
Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& shape, Tag tag) { return from_host(v, shape, tag); }
Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& shape, Tag tag) { return from_host(v, shape, tag); }
Tensor Tensor::from_vector(const std::vector<int32_t>& v, const Shape& shape, Tag tag) { return from_host(v, shape, tag); }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int i = dim() - 1; i >= 0; --i) {
    if (shape_[i] != 1 && strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

int Tensor::wrap_dim(int d) const {
  int w = d < 0 ? d + dim() : d;
  assert(w >= 0 && w < dim());
  return w;
}

Tensor Tensor::view(const Shape& shape) const {
  if (!is_contiguous()) fail("view of a non-contiguous tensor of shape {}; use reshape", shape_str(shape_));
  Shape s = shape;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      if (infer >= 0) fail("view {}: only one dimension may be -1", shape_str(shape));
      infer = int(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0 && known != 0) s[infer] = numel() / known;
  if (shape_numel(s) != numel()) fail("cannot view shape {} as {}", shape_str(shape_), shape_str(shape));
  return Tensor(storage_, s, contiguous_strides(s), offset_, dtype_);
}

Tensor Tensor::reshape(const Shape& shape) const { return is_contiguous() ? view(shape) : contiguous().view(shape); }

Tensor Tensor::transpose(int a, int b) const {
  std::vector<int> order(dim());
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[wrap_dim(a)], order[wrap_dim(b)]);
  return permute(order);
}

Tensor Tensor::permute(const std::vector<int>& order) const {
  if (int(order.size()) != dim()) fail("permute of shape {} needs {} axes, got {}", shape_str(shape_), dim(), order.size());
  Shape s(dim()), st(dim());
  for (int i = 0; i < dim(); ++i) {
    s[i] = shape_[wrap_dim(order[i])];
    st[i] = strides_[wrap_dim(order[i])];
  }
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::narrow(int d, int64_t start, int64_t length) const {
  d = wrap_dim(d);
  if (start < 0 || length < 0 || start + length > shape_[d])
    fail("narrow [{}, {}) out of range for axis {} of shape {}", start, start + length, d, shape_str(shape_));
  Shape s = shape_;
  s[d] = length;
  return Tensor(storage_, s, strides_, offset_ + start * strides_[d], dtype_);
}

Tensor Tensor::select(int d, int64_t index) const {
  d = wrap_dim(d);
  Tensor t = narrow(d, index, 1);
  t.shape_.erase(t.shape_.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  return t;
}

Tensor Tensor::unsqueeze(int d) const {
  if (d < 0) d += dim() + 1;
  Tensor t = *this;
  int64_t stride = d < dim() ? shape_[d] * strides_[d] : 1;
  t.shape_.insert(t.shape_.begin() + d, 1);
  t.strides_.insert(t.strides_.begin() + d, stride);
  return t;
}

Tensor Tensor::expand(const Shape& shape) const {
  if (shape.size() < shape_.size()) fail("cannot expand shape {} to {}", shape_str(shape_), shape_str(shape));
  size_t lead = shape.size() - shape_.size();
  Shape st(shape.size(), 0);
  for (size_t i = 0; i < shape_.size(); ++i) {
    if (shape_[i] == shape[lead + i]) st[lead + i] = strides_[i];
    else if (shape_[i] != 1) fail("cannot expand shape {} to {}", shape_str(shape_), shape_str(shape));
  }
  return Tensor(storage_, shape, st, offset_, dtype_);
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(tag()); }

Tensor Tensor::clone(Tag tag) const {
  Tensor t = empty(shape_, dtype_, device(), tag);
  backend(device()).copy(*this, t);
  return t;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype_) return *this;
  Tensor t = empty(shape_, dt, device(), tag());
  backend(device()).copy(*this, t);
  return t;
}

static std::atomic<uint64_t> g_host_transfers{0};
uint64_t host_transfers() { return g_host_transfers.load(std::memory_order_relaxed); }

// One copy of a contiguous tensor's bytes between the host and a device
// into `dst` (same shape and dtype, contiguous), counted.
static void transfer(const Tensor& src, const Tensor& dst) {
  KernelScope copying;  // a host <-> device copy is a kernel
  if (!dst.device().is_meta()) g_host_transfers.fetch_add(1, std::memory_order_relaxed);
  if (dst.device().is_cpu()) backend(src.device()).copy_to_host(dst.raw(), src.raw(), src.nbytes());
  else backend(dst.device()).copy_from_host(dst.raw(), src.raw(), src.nbytes());
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  if (device().is_meta())
    fail("a meta tensor {} has no values to copy to {} (the meta device holds shapes only)", shape_str(shape_), d.str());
  if (!device().is_cpu() && !d.is_cpu() && !d.is_meta()) return to(kCPU).to(d);  // two devices: through the host
  Tensor t = empty(shape_, dtype_, d, tag());
  transfer(contiguous(), t);
  return t;
}

void Tensor::refuse_host_access() const {
  fail("host code read a tensor of shape {} on device {}: copy it with .to(kCPU) first (or read .item())",
       shape_str(shape_), device().str());
}

// Between the host and a device with the same dtype, both contiguous: one
// counted copy straight into this tensor (a staging buffer's round trip), no
// temporary.
void Tensor::copy_from(const Tensor& src) {
  if (src.shape() != shape_) fail("copy of shape {} into shape {}", shape_str(src.shape()), shape_str(shape_));
  const bool host_and_device = src.device() != device() && (src.device().is_cpu() || device().is_cpu()) &&
                               !src.device().is_meta() && !device().is_meta();
  if (host_and_device && src.dtype() == dtype_ && src.is_contiguous() && is_contiguous()) return transfer(src, *this);
  backend(device()).copy(src.device() == device() ? src : src.to(device()), *this);
}

int64_t Tensor::element_offset(std::initializer_list<int64_t> index) const {
  if (int(index.size()) != dim()) fail("index of {} axes into shape {}", index.size(), shape_str(shape_));
  int64_t off = offset_;
  int i = 0;
  for (int64_t x : index) {
    if (x < 0 || x >= shape_[i]) fail("index {} out of range for axis {} of shape {}", x, i, shape_str(shape_));
    off += x * strides_[i++];
  }
  return off;
}

static double read_element(const void* base, DType dt, int64_t off) {
  switch (dt) {
    case DType::f32: return static_cast<const float*>(base)[off];
    case DType::bf16: return bf16_to_float(static_cast<const bf16*>(base)[off]);
    case DType::i32: return static_cast<const int32_t*>(base)[off];
    case DType::f64: return static_cast<const double*>(base)[off];
    case DType::u8: return static_cast<const uint8_t*>(base)[off];
  }
  return 0;
}

double Tensor::at(std::initializer_list<int64_t> index) const {
  if (!device().is_cpu()) return to(kCPU).at(index);
  return read_element(storage_->data(), dtype_, element_offset(index));
}

void Tensor::set(std::initializer_list<int64_t> index, double value) {
  assert(device().is_cpu());
  int64_t off = element_offset(index);
  void* base = storage_->data();
  switch (dtype_) {
    case DType::f32: static_cast<float*>(base)[off] = float(value); break;
    case DType::bf16: static_cast<bf16*>(base)[off] = float_to_bf16(float(value)); break;
    case DType::i32: static_cast<int32_t*>(base)[off] = int32_t(value); break;
    case DType::f64: static_cast<double*>(base)[off] = value; break;
    case DType::u8: static_cast<uint8_t*>(base)[off] = uint8_t(value); break;
  }
}

double Tensor::item() const {
  if (numel() != 1) fail("item() of a tensor of shape {}", shape_str(shape_));
  Tensor t = contiguous().to(kCPU);
  return read_element(t.raw(), dtype_, 0);
}

std::vector<float> Tensor::to_floats() const {
  Tensor t = to(kCPU).to(DType::f32).contiguous();
  const float* p = t.data<float>();
  return std::vector<float>(p, p + t.numel());
}

}  // namespace mp
