// Tensor: data only (no gradient). A view into shared Storage described by
// shape, strides (in elements) and an offset, so reshape, transpose, narrow
// and expand cost no copy. Kernels mostly want contiguous() inputs.
#pragma once
#include <cassert>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "engine/host_access.h"
#include "engine/memory.h"
#include "engine/thread_state.h"

namespace mp {

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);  // "(2, 3, 4)"

class Tensor {
 public:
  Tensor() = default;  // undefined: defined() is false

  // Factories. The device defaults to the current DeviceScope's (the CPU),
  // the tag to the current TagScope's. from_vector makes host (CPU) tensors.
  static Tensor empty(const Shape& shape, DType dt = DType::f32, Device d = default_device(), Tag tag = current_tag());
  static Tensor zeros(const Shape& shape, DType dt = DType::f32, Device d = default_device(), Tag tag = current_tag());
  static Tensor full(const Shape& shape, double value, DType dt = DType::f32, Device d = default_device(),
                     Tag tag = current_tag());
  static Tensor from_vector(const std::vector<float>& v, const Shape& shape, Tag tag = current_tag());
  static Tensor from_vector(const std::vector<double>& v, const Shape& shape, Tag tag = current_tag());
  static Tensor from_vector(const std::vector<int32_t>& v, const Shape& shape, Tag tag = current_tag());

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  int dim() const { return int(shape_.size()); }
  int64_t size(int d) const { return shape_[wrap_dim(d)]; }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_->device(); }
  Tag tag() const { return storage_->tag(); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  bool is_contiguous() const;
  int wrap_dim(int d) const;  // -1 -> dim()-1; asserts range

  // Pointer to element 0 of this view (the storage's bytes + offset). On the
  // sim device only a running kernel may ask (engine/host_access.h).
  void* raw() const {
    if (storage_->device().type == DeviceType::sim && !inside_kernel()) refuse_host_access();
    return static_cast<char*>(storage_->data()) + offset_ * int64_t(dtype_size(dtype_));
  }
  template <class T> T* data() const {
    assert(dtype_of<T>() == dtype_);
    return static_cast<T*>(raw());
  }

  // Views (no copy). Shape errors throw mp::Error naming the shapes.
  Tensor view(const Shape& shape) const;     // contiguous only; one dim may be -1
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy
  Tensor transpose(int a, int b) const;
  Tensor permute(const std::vector<int>& order) const;
  Tensor narrow(int d, int64_t start, int64_t length) const;
  Tensor select(int d, int64_t index) const;  // drops dimension d
  Tensor unsqueeze(int d) const;
  Tensor expand(const Shape& shape) const;    // broadcast with stride 0

  // Copies.
  Tensor contiguous() const;  // itself if already contiguous
  Tensor clone(Tag tag = current_tag()) const;
  Tensor to(DType dt) const;
  Tensor to(Device d) const;  // a copy between the host and a device counts in host_transfers()
  void copy_from(const Tensor& src);  // same shape; converts dtype and device

  // Element access for tests and small host-side code (any dtype, as double).
  // A meta tensor has no values: these throw mp::Error naming its shape.
  double at(std::initializer_list<int64_t> index) const;
  void set(std::initializer_list<int64_t> index, double value);
  double item() const;                 // a one-element tensor's value
  std::vector<float> to_floats() const;  // any dtype, any device, row-major

 private:
  Tensor(std::shared_ptr<Storage> s, Shape shape, Shape strides, int64_t offset, DType dt);
  int64_t element_offset(std::initializer_list<int64_t> index) const;
  [[noreturn]] void refuse_host_access() const;
  std::shared_ptr<Storage> storage_;
  Shape shape_, strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::f32;
};

Shape contiguous_strides(const Shape& shape);
// The shape two shapes broadcast to (NumPy rules); throws mp::Error naming both.
Shape broadcast_shapes(const Shape& a, const Shape& b);

// How many copies between the host and a device (CUDA, sim) Tensor::to has
// made so far: each is a point where the host waits for the device, so a
// training step on a GPU should make as few as it can (bench reports them).
uint64_t host_transfers();

}  // namespace mp
