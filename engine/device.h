// Where a tensor's bytes live. The meta device holds shapes and no bytes:
// its kernels do nothing and its allocations only go through the Ledger, so
// running the real code on it counts the bytes a CPU run would use
// (engine/meta/meta_backend.h; the memory planner runs a training step there).
// A meta device plans for one device type, named by its index: kMeta plans
// the CPU's allocations (its allocator and its kernels' workspace), meta:cuda
// the CUDA backend's (engine/meta/).
// The sim device is an accelerator without one: host memory and the CPU
// kernels, but host code may not read its bytes (engine/host_access.h), so a
// forgotten .to(device) or host read fails on every machine, not on a GPU.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace mp {

enum class DeviceType : uint8_t { cpu, cuda, meta, sim };
constexpr int kDeviceTypes = 4;

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  bool operator==(const Device&) const = default;
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_meta() const { return type == DeviceType::meta; }
  // The device type whose memory this one's allocations follow: a meta device's index, else its own type.
  DeviceType planned_type() const { return is_meta() ? DeviceType(index) : type; }
  std::string str() const {
    switch (type) {
      case DeviceType::cpu: return "cpu";
      case DeviceType::meta: return planned_type() == DeviceType::cuda ? "meta:cuda" : "meta";
      case DeviceType::sim: return "sim";
      case DeviceType::cuda: break;
    }
    return "cuda:" + std::to_string(index);
  }
};

inline constexpr Device kCPU{DeviceType::cpu, 0};
inline constexpr Device kCUDA{DeviceType::cuda, 0};
inline constexpr Device kMeta{DeviceType::meta, int(DeviceType::cpu)};
inline constexpr Device kMetaCuda{DeviceType::meta, int(DeviceType::cuda)};
inline constexpr Device kSim{DeviceType::sim, 0};

// "cpu", "cuda", "cuda:N", "sim" or "meta"; anything else is an mp::Error naming it.
Device parse_device(std::string_view name);

}  // namespace mp
