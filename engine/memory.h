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
#include <string>
#include <string_view>

#include "engine/device.h"

namespace mp {

// cached: blocks the allocator holds for reuse, not in any tensor (engine/block_pool.h);
// the other tags together are the allocated bytes, all of them the reserved bytes.
enum class Tag : uint8_t { weights, grads, optimizer, activations, workspace, adapter, cached };
constexpr int kTags = 7;
std::string_view tag_name(Tag t);

using TagBytes = std::array<size_t, kTags>;

// The moment the sum of all tags peaked: bytes per tag then, and where the
// program was (see Ledger::set_phase, set_op and note_op).
struct PeakMoment {
  TagBytes by_tag{};
  std::string phase;  // "forward", "backward", ... ("" if no phase was set)
  std::string op;     // the autograd op that was running ("" if unknown)
};

// Bytes per (device type, tag): current, peak, and the peak of their sum
// with the moment it was reached.
class Ledger {
 public:
  static Ledger& instance();
  void on_alloc(Device d, Tag t, size_t bytes);
  void on_free(Device d, Tag t, size_t bytes);
  size_t current(Tag t, Device d = kCPU) const;
  size_t peak(Tag t, Device d = kCPU) const;  // this tag's own peak
  size_t current_total(Device d = kCPU) const;
  size_t peak_total(Device d = kCPU) const;  // peak of the sum, not the sum of peaks
  const PeakMoment& peak_moment(Device d = kCPU) const;
  // Start a new measurement: peaks drop to what is allocated now.
  void reset_peaks();

  // Reserved bytes: what the device's allocator holds from the OS or the
  // driver, in its own block sizes (pages, granules, CUDA's 512 B / 2 MiB
  // steps), live and cached together. The tags count what tensors asked for;
  // this counts what the allocator took for them (the allocators report it).
  void on_reserve(Device d, size_t bytes);
  void on_unreserve(Device d, size_t bytes);
  size_t reserved(Device d = kCPU) const;
  size_t peak_reserved(Device d = kCPU) const;

  // Where the program is, so that the peak can be located. The training step
  // sets the phase; backward() names the node it runs (set_op, "" after it);
  // in a forward pass an op allocates before its node exists, so a peak
  // reached there is named by the next node recorded (note_op).
  void set_phase(std::string_view phase) { phase_ = phase; }
  void set_op(std::string_view op) { op_ = op; }
  std::string_view op() const { return op_; }
  void note_op(std::string_view op);

 private:
  struct PerDevice {
    TagBytes current{}, peak{};
    size_t total = 0, peak_total = 0;
    size_t reserved = 0, peak_reserved = 0;
    PeakMoment moment;
    bool op_pending = false;  // a forward peak waits for note_op to name it
  };
  std::array<PerDevice, kDeviceTypes> devices_{};
  std::string_view phase_, op_;  // literals / names that outlive their use (see set_phase)
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
