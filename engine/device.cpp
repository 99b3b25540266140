#include "engine/device.h"

namespace mp {

static thread_local Device g_default_device = kCPU;

Device default_device() { return g_default_device; }
DeviceScope::DeviceScope(Device d) : saved_(g_default_device) { g_default_device = d; }
DeviceScope::~DeviceScope() { g_default_device = saved_; }

}  // namespace mp
