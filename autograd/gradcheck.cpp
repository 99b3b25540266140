#include "autograd/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace mp::ag {

// The element with row-major index i of a (possibly strided) f64 tensor.
static double& element(const Tensor& t, int64_t i) {
  int64_t offset = 0;
  for (int d = t.dim() - 1; d >= 0; --d) {
    offset += (i % t.size(d)) * t.strides()[d];
    i /= t.size(d);
  }
  return t.data<double>()[offset];
}

static Tensor random_weights(const Shape& shape, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  std::vector<double> w(size_t(shape_numel(shape)));
  for (double& x : w) x = uniform(rng);
  return Tensor::from_vector(w, shape);
}

static void check_input(const Tensor& t, size_t i) {
  if (t.dtype() != DType::f64 || !t.device().is_cpu())
    fail("gradcheck: input {} must be an f64 CPU tensor, not {} on {}", i, dtype_name(t.dtype()), t.device().str());
  for (int d = 0; d < t.dim(); ++d)
    if (t.strides()[d] == 0 && t.size(d) > 1)
      fail("gradcheck: input {} {} is broadcast (stride 0); pass a real tensor", i, shape_str(t.shape()));
}

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  auto wanted = [&](size_t i) { return options.requires_grad.empty() || options.requires_grad[i]; };
  std::vector<Variable> vars;
  for (size_t i = 0; i < inputs.size(); ++i) {
    check_input(inputs[i], i);
    vars.emplace_back(inputs[i], wanted(i));
  }

  // Analytic: backward of L = sum(out * W).
  Variable out = fn(vars);
  if (out.value().dtype() != DType::f64) fail("gradcheck: fn must return f64, not {}", dtype_name(out.value().dtype()));
  Tensor weights = random_weights(out.shape(), options.seed);
  Variable loss = sum_all(mul(out, Variable(weights)));
  if (loss.requires_grad()) loss.backward();  // otherwise every analytic gradient is 0

  // Numeric: L with the inputs as they are now (no graph needed).
  auto L = [&]() {
    NoGrad no_grad;
    return ops::sum_all(ops::mul(fn(vars).value(), weights)).item();
  };

  GradcheckResult r;
  double worst_score = -1;  // error / tolerance of the worst element; > 1 fails
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!wanted(i)) continue;
    Tensor analytic = vars[i].grad();  // undefined: L does not depend on this input
    for (int64_t j = 0; j < inputs[i].numel(); ++j) {
      double& x = element(inputs[i], j);
      double saved = x;
      x = saved + options.eps;
      double plus = L();
      x = saved - options.eps;
      double minus = L();
      x = saved;
      double numeric = (plus - minus) / (2 * options.eps);
      double a = analytic.defined() ? element(analytic, j) : 0.0;

      double err = std::abs(a - numeric);
      double scale = std::max({std::abs(a), std::abs(numeric), 1.0});
      double score = err / (options.atol + options.rtol * std::abs(numeric));
      r.checked++;
      r.max_abs_error = std::max(r.max_abs_error, err);
      r.max_rel_error = std::max(r.max_rel_error, err / scale);
      if (score > worst_score) {
        worst_score = score;
        r.worst_input = int(i);
        r.worst_index = j;
        r.worst_analytic = a;
        r.worst_numeric = numeric;
      }
    }
  }
  r.ok = worst_score <= 1;
  return r;
}

std::string GradcheckResult::str() const {
  return fmt::format(
      "gradcheck {}: {} elements, max abs error {:.3g}, max rel error {:.3g}; worst: input {} element {} "
      "(analytic {:.10g}, numeric {:.10g})",
      ok ? "ok" : "FAILED", checked, max_abs_error, max_rel_error, worst_input, worst_index, worst_analytic,
      worst_numeric);
}

}  // namespace mp::ag
