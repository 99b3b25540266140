#include "engine/backend.h"

#include <array>
#include <mutex>

#include "engine/error.h"
#include "engine/meta/meta_backend.h"

namespace mp {

Backend* cpu_backend();   // engine/cpu/cpu_backend.cpp
Backend* sim_backend();   // engine/cpu/cpu_backend.cpp

namespace {

struct Registry {
  std::array<Backend*, kDeviceTypes> backends{cpu_backend(), nullptr, nullptr, sim_backend()};
  // The meta device's backends, by the device type they plan (Device::planned_type).
  std::array<Backend*, kDeviceTypes> plans{cpu_plan_backend(), cuda_plan_backend(), nullptr, nullptr};
  std::array<Backend* (*)(), kDeviceTypes> loaders{};
  std::array<std::once_flag, kDeviceTypes> loaded;
  std::array<void (*)(int), kDeviceTypes> selectors{};
};

Registry& registry() {
  static Registry r;
  return r;
}

// The backend of d's type, made the first time on device d (its selector, then its loader); on
// the meta device, the plan of the device type it plans.
Backend* find(Device d) {
  Registry& r = registry();
  if (d.is_meta()) return r.plans[int(d.planned_type())];
  const int t = int(d.type);
  std::call_once(r.loaded[t], [&] {
    if (r.backends[t] || !r.loaders[t]) return;
    if (r.selectors[t]) r.selectors[t](d.index);
    r.backends[t] = r.loaders[t]();
  });
  return r.backends[t];
}

}  // namespace

void Backend::nf4_quantize(const Tensor&, Nf4Tensor&) { fail("nf4 weights are not supported on {}", device().str()); }
void Backend::nf4_dequantize(const Nf4Tensor&, const Tensor&) {
  fail("nf4 weights are not supported on {}", device().str());
}
void Backend::nf4_matmul(const Tensor&, const Nf4Tensor&, bool, const Tensor&) {
  fail("nf4 weights are not supported on {}", device().str());
}

Backend& backend(Device d) {
  Backend* b = find(d);
  if (!b) fail("no backend for device {}: minipeft was built without it or no such device is present", d.str());
  return *b;
}

void register_backend(DeviceType t, Backend* b) { registry().backends[int(t)] = b; }
void register_backend_loader(DeviceType t, Backend* (*load)()) { registry().loaders[int(t)] = load; }
bool has_backend(DeviceType t) { return find({t, 0}) != nullptr; }
void register_device_selector(DeviceType t, void (*select)(int)) { registry().selectors[int(t)] = select; }

}  // namespace mp
