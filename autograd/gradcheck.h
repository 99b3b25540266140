// Gradient checking by finite differences: is an op's backward the
// derivative of its forward?
//
// For a function fn of some f64 inputs, take the scalar
//   L(inputs) = sum(fn(inputs) * W)      (W fixed random weights, fn's output shape)
// Its gradient is computed twice:
//   analytic: L.backward(), i.e. the backward functions under test;
//   numeric:  for every input element x, (L(x + eps) - L(x - eps)) / (2 eps)
//             (central differences: error O(eps^2), plus rounding ~1e-16/eps).
// Random weights rather than ones, so that a gradient sent to the wrong
// output element, or a sum where a mean belongs, shows up.
//
//   auto r = gradcheck([](const std::vector<Variable>& v) { return mul(v[0], v[1]); }, {a, b});
//   CHECK_MESSAGE(r.ok, r.str());
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/variable.h"

namespace mp::ag {

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step
  double atol = 1e-6;  // an element passes if |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-5;
  uint64_t seed = 1234;  // for the weights W
  // Which inputs require a gradient (and are checked); empty: all of them.
  // Inputs that require none test an op's "gradient not needed" path.
  std::vector<bool> requires_grad;
};

struct GradcheckResult {
  bool ok = true;
  int64_t checked = 0;       // input elements compared
  double max_abs_error = 0;  // max |analytic - numeric|
  double max_rel_error = 0;  // max |analytic - numeric| / max(|analytic|, |numeric|, 1)
  // The element furthest outside the tolerance (or closest to it).
  int worst_input = -1;
  int64_t worst_index = -1;  // row-major index into that input
  double worst_analytic = 0, worst_numeric = 0;
  std::string str() const;
};

using GradcheckFn = std::function<Variable(const std::vector<Variable>&)>;

// inputs: f64 CPU tensors (any strides, but no broadcast stride-0 axes).
// fn gets one Variable per input, wrapping the same storage, and must return
// an f64 Variable. The inputs are perturbed in place and restored.
GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace mp::ag
