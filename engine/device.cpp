#include "engine/device.h"

#include <charconv>

#include "engine/error.h"

namespace mp {

Device parse_device(std::string_view name) {
  if (name == "cpu") return kCPU;
  if (name == "sim") return kSim;
  if (name == "meta") return kMeta;
  if (name == "cuda") return kCUDA;
  if (name.starts_with("cuda:")) {
    std::string_view n = name.substr(5);
    int index = -1;
    auto [end, err] = std::from_chars(n.data(), n.data() + n.size(), index);
    if (err == std::errc() && end == n.data() + n.size() && index >= 0) return {DeviceType::cuda, index};
  }
  fail("device '{}': expected cpu, cuda, cuda:N (N = 0, 1, ...), sim or meta", name);
}

}  // namespace mp
