// How bitsandbytes' native CPU kernel (quantize_cpu, 0.50) picks the 8-bit
// code of a normalised value v in [-1, 1]: not by searching the code but
// through a table of 65536 bins over [-1, 1]. Bin i stands for the value
// -1 + 2i / 65535 and holds the nearest code entry of that value (the number
// of midpoints below it); v goes to bin trunc(((v + 1) * 0.5) * 65535 + 0.5).
// So v gets the code nearest to its bin's value, which now and then is a
// neighbour of the code nearest to v itself: to store bitsandbytes' bytes,
// quantize_absmax_groups (nf4.cpp) looks codes up the same way, every step
// rounded to f32 as there.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace mp::cpu {

class CodeLut {
 public:
  static constexpr int kBins = 65536;

  explicit CodeLut(const std::array<float, 256>& code) : lut_(kBins) {
    std::array<float, 255> mid;
    for (size_t i = 0; i < mid.size(); ++i) mid[i] = 0.5f * (code[i] + code[i + 1]);
    size_t k = 0;
    for (int i = 0; i < kBins; ++i) {
      const float value = -1.f + (2.f * float(i)) / float(kBins - 1);
      while (k < mid.size() && mid[k] < value) ++k;
      lut_[size_t(i)] = uint8_t(k);
    }
  }

  uint8_t code_of(float v) const {
    const float c = std::isnan(v) ? -1.f : std::clamp(v, -1.f, 1.f);  // NaN (from an inf weight): bin 0
    volatile float scaled = ((c + 1.f) * 0.5f) * float(kBins - 1);    // rounded: never fused
    return lut_[size_t(uint16_t(scaled + 0.5f))];
  }

 private:
  std::vector<uint8_t> lut_;
};

}  // namespace mp::cpu
