#include "engine/backend.h"

#include <array>

#include "engine/error.h"

namespace mp {

Backend* cpu_backend();   // engine/cpu/cpu_backend.cpp
Backend* meta_backend();  // engine/meta/meta_backend.cpp

static std::array<Backend*, kDeviceTypes>& registry() {
  static std::array<Backend*, kDeviceTypes> backends{cpu_backend(), nullptr, meta_backend()};
  return backends;
}

Backend& backend(Device d) {
  Backend* b = registry()[int(d.type)];
  if (!b) fail("no backend for device {}: minipeft was built without it or no such device is present", d.str());
  return *b;
}

void register_backend(DeviceType t, Backend* b) { registry()[int(t)] = b; }
bool has_backend(DeviceType t) { return registry()[int(t)] != nullptr; }

}  // namespace mp
