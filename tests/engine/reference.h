// Helpers for the engine tests: random tensors and naive double-precision
// reference computations that are obviously correct.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "engine/ops.h"
#include "engine/tensor.h"

namespace mp::test {

// A tensor of the given shape with values uniform in [lo, hi) from a std::mt19937 seed.
inline Tensor rand_tensor(const Shape& shape, uint32_t seed, DType dt = DType::f32, double lo = -1, double hi = 1) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(size_t(shape_numel(shape)));
  for (double& x : v) x = u(gen);
  return Tensor::from_vector(v, shape).to(dt);
}

// Every element of any tensor as double, row-major.
inline std::vector<double> values(const Tensor& t) {
  Tensor c = t.to(kCPU).to(DType::f64).contiguous();
  const double* p = c.data<double>();
  return std::vector<double>(p, p + c.numel());
}

// d loss / d x[i] (x viewed flat, f64) by central differences; x[i] is left as it was.
inline double central_difference(const Tensor& x, int64_t i, const std::function<double()>& loss, double h = 1e-6) {
  Tensor flat = x.view({x.numel()});
  const double x0 = flat.at({i});
  flat.set({i}, x0 + h);
  const double up = loss();
  flat.set({i}, x0 - h);
  const double down = loss();
  flat.set({i}, x0);
  return (up - down) / (2 * h);
}

// The whole gradient of loss with respect to x by central differences.
inline std::vector<double> numeric_grad(const Tensor& x, const std::function<double()>& loss, double h = 1e-6) {
  std::vector<double> g;
  for (int64_t i = 0; i < x.numel(); ++i) g.push_back(central_difference(x, i, loss, h));
  return g;
}

// Largest |a - b| / (atol + |b|)-style check: |a - b| <= atol + rtol |b| everywhere.
inline void check_close(const std::vector<double>& got, const std::vector<double>& want, double atol,
                        double rtol = 0) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    CHECK(std::abs(got[i] - want[i]) <= atol + rtol * std::abs(want[i]));
    if (std::abs(got[i] - want[i]) > atol + rtol * std::abs(want[i])) return;  // one failure is enough
  }
}

inline void check_close(const Tensor& got, const std::vector<double>& want, double atol, double rtol = 0) {
  check_close(values(got), want, atol, rtol);
}

}  // namespace mp::test
