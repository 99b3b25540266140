// Shared by the autograd tests: random f64 inputs and a gradcheck wrapper
// that records the worst errors seen (printed once at exit).
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "engine/ops.h"

namespace mp::ag::test {

// Uniform in [lo, hi), f64, from a fixed seed.
inline Tensor rand64(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(size_t(shape_numel(shape)));
  for (double& x : v) x = u(rng);
  return Tensor::from_vector(v, shape);
}

struct GradcheckSummary {
  int checks = 0;
  int64_t elements = 0;
  double max_abs = 0, max_rel = 0;
  ~GradcheckSummary() {
    std::printf("gradcheck summary: %d checks, %lld elements, max abs error %.3g, max rel error %.3g\n", checks,
                (long long)elements, max_abs, max_rel);
  }
};
inline GradcheckSummary& summary() {
  static GradcheckSummary s;
  return s;
}

inline void check_gradients(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions options = {}) {
  GradcheckResult r = gradcheck(fn, inputs, options);
  CHECK_MESSAGE(r.ok, r.str());
  CHECK(r.checked > 0);
  GradcheckSummary& s = summary();
  s.checks++;
  s.elements += r.checked;
  s.max_abs = std::max(s.max_abs, r.max_abs_error);
  s.max_rel = std::max(s.max_rel, r.max_rel_error);
}

using Vars = std::vector<Variable>;

}  // namespace mp::ag::test
