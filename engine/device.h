// Where a tensor's bytes live. The meta device holds shapes and no bytes:
// its kernels do nothing and its allocations only go through the Ledger, so
// running the real code on it counts the bytes a CPU run would use
// (engine/meta/meta_backend.cpp; the memory planner runs a training step there).
#pragma once
#include <cstdint>
#include <string>

namespace mp {

enum class DeviceType : uint8_t { cpu, cuda, meta };
constexpr int kDeviceTypes = 3;

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  bool operator==(const Device&) const = default;
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_meta() const { return type == DeviceType::meta; }
  std::string str() const {
    return type == DeviceType::cpu ? "cpu" : type == DeviceType::meta ? "meta" : "cuda:" + std::to_string(index);
  }
};

inline constexpr Device kCPU{DeviceType::cpu, 0};
inline constexpr Device kCUDA{DeviceType::cuda, 0};
inline constexpr Device kMeta{DeviceType::meta, 0};

}  // namespace mp
