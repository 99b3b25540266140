// Every byte has a tag. Storage is the one owner of tensor bytes; it asks the
// device's backend for memory and tells the Ledger, which keeps current and
// peak bytes per tag and device. A TagScope sets the tag that new tensors get
// by default, so a layer need not pass a tag to every op:
//
//   { TagScope scope(Tag::optimizer); m = Tensor::zeros(shape); }   // counted as optimizer
#pragma once
#include <array>
#include <cstddef>
#include <memory>
#include <string_view>

#include "engine/device.h"

namespace mp {

enum class Tag : uint8_t { weights, grads, optimizer, activations, workspace, adapter };
constexpr int kTags = 6;
std::string_view tag_name(Tag t);

// Bytes per (device type, tag): current, peak, and the peak of their sum.
class Ledger {
 public:
  static Ledger& instance();
  void on_alloc(Device d, Tag t, size_t bytes);
  void on_free(Device d, Tag t, size_t bytes);
  size_t current(Tag t, Device d = kCPU) const;
  size_t peak(Tag t, Device d = kCPU) const;
  size_t current_total(Device d = kCPU) const;
  size_t peak_total(Device d = kCPU) const;  // peak of the sum, not the sum of peaks
  // Start a new measurement: peaks drop to what is allocated now.
  void reset_peaks();

 private:
  struct PerDevice {
    std::array<size_t, kTags> current{}, peak{};
    size_t total = 0, peak_total = 0;
  };
  std::array<PerDevice, kDeviceTypes> devices_{};
};

// The tag new storage gets when none is given (thread-local; default activations).
Tag current_tag();

class TagScope {
 public:
  explicit TagScope(Tag t);
  ~TagScope();
  TagScope(const TagScope&) = delete;
  TagScope& operator=(const TagScope&) = delete;

 private:
  Tag saved_;
};

// A block of device memory with its tag, freed (and un-ledgered) on destruction.
class Storage {
 public:
  static std::shared_ptr<Storage> allocate(size_t bytes, Device d, Tag t);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  Tag tag() const { return tag_; }
  // Move the bytes to another tag's account (e.g. weights -> adapter).
  void retag(Tag t);

 private:
  Storage(void* data, size_t bytes, Device d, Tag t) : data_(data), bytes_(bytes), device_(d), tag_(t) {}
  void* data_;
  size_t bytes_;
  Device device_;
  Tag tag_;
};

}  // namespace mp
