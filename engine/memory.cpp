#include "engine/memory.h"

#include <algorithm>

#include "engine/backend.h"

namespace mp {

std::string_view tag_name(Tag t) {
  static constexpr std::string_view names[kTags] = {"weights", "grads", "optimizer", "activations", "workspace", "adapter", "cached"};
  return names[int(t)];
}

Ledger& Ledger::instance() {
  static Ledger ledger;
  return ledger;
}

void Ledger::on_alloc(Device d, Tag t, size_t bytes) {
  PerDevice& p = devices_[int(d.type)];
  p.current[int(t)] += bytes;
  p.peak[int(t)] = std::max(p.peak[int(t)], p.current[int(t)]);
  p.total += bytes;
  if (p.total > p.peak_total) {
    p.peak_total = p.total;
    p.peak_reserved = p.reserved;
    p.moment.by_tag = p.current;
    p.moment.phase = phase_;
    p.moment.op = op_;
    p.op_pending = op_.empty();
  }
}

void Ledger::note_op(std::string_view op) {
  for (PerDevice& p : devices_)
    if (p.op_pending) {
      p.moment.op = op;
      p.op_pending = false;
    }
}

void Ledger::on_free(Device d, Tag t, size_t bytes) {
  PerDevice& p = devices_[int(d.type)];
  p.current[int(t)] -= bytes;
  p.total -= bytes;
}

void Ledger::on_reserve(Device d, size_t bytes) {
  PerDevice& p = devices_[int(d.type)];
  p.reserved += bytes;
  p.peak_reserved = std::max(p.peak_reserved, p.reserved);
}

void Ledger::on_unreserve(Device d, size_t bytes) { devices_[int(d.type)].reserved -= bytes; }

size_t Ledger::current(Tag t, Device d) const { return devices_[int(d.type)].current[int(t)]; }
size_t Ledger::peak(Tag t, Device d) const { return devices_[int(d.type)].peak[int(t)]; }
size_t Ledger::current_total(Device d) const { return devices_[int(d.type)].total; }
size_t Ledger::peak_total(Device d) const { return devices_[int(d.type)].peak_total; }
const PeakMoment& Ledger::peak_moment(Device d) const { return devices_[int(d.type)].moment; }
size_t Ledger::reserved(Device d) const { return devices_[int(d.type)].reserved; }
size_t Ledger::peak_reserved(Device d) const { return devices_[int(d.type)].peak_reserved; }

void Ledger::reset_peaks() {
  for (PerDevice& p : devices_) {
    p.peak = p.current;
    p.peak_total = p.total;
    p.peak_reserved = p.reserved;
    p.moment = {p.current, std::string(phase_), std::string(op_)};
    p.op_pending = false;
  }
}

std::shared_ptr<Storage> Storage::allocate(size_t bytes, Device d, Tag t) {
  void* data = backend(d).allocate(bytes, t);
  Ledger::instance().on_alloc(d, t, bytes);
  return std::shared_ptr<Storage>(new Storage(data, bytes, d, t));
}

Storage::~Storage() {
  // Un-ledgered first: the allocator may ledger the block as cached.
  Ledger::instance().on_free(device_, tag_, bytes_);
  backend(device_).deallocate(data_, bytes_, tag_);
}

void Storage::retag(Tag t) {
  Ledger::instance().on_free(device_, tag_, bytes_);
  Ledger::instance().on_alloc(device_, t, bytes_);
  tag_ = t;
}

}  // namespace mp
