// Reductions. A sum hands every input element the same gradient: the output
// gradient, put back on the reduced axis (size 1) and broadcast over it.
// A mean is a sum scaled by 1/n.
#include "autograd/ops.h"
#include "engine/ops.h"

namespace mp::ag {

// g has the reduced shape, with or without the reduced axis: reshape it to
// keep that axis as size 1, then broadcast (a stride-0 view, no copy).
static Tensor spread(const Tensor& g, const Shape& in_shape, int axis) {
  Shape kept = in_shape;
  kept[axis] = 1;
  return g.reshape(kept).expand(in_shape);
}

static Variable reduce_sum(const Variable& a, int axis, bool keepdim, float factor, const char* name) {
  axis = a.value().wrap_dim(axis);
  Tensor out = ops::sum(a.value(), axis, keepdim);
  if (factor != 1.f) out = ops::scale(out, factor);
  Shape in_shape = a.shape();
  return make_result(out, name, {a}, [in_shape, axis, factor](const Tensor& g, std::span<Tensor> gin) {
    Tensor ga = spread(g, in_shape, axis);
    gin[0] = factor != 1.f ? ops::scale(ga, factor) : ga;
  });
}

// out = sum_i a_i (over one axis):  da_i = g.
Variable sum(const Variable& a, int axis, bool keepdim) { return reduce_sum(a, axis, keepdim, 1.f, "sum"); }

// out = (1/n) sum_i a_i:  da_i = g / n.
Variable mean(const Variable& a, int axis, bool keepdim) {
  return reduce_sum(a, axis, keepdim, 1.f / float(a.size(axis)), "mean");
}

static Variable reduce_all(const Variable& a, float factor, const char* name) {
  Tensor out = ops::sum_all(a.value());  // (1)
  if (factor != 1.f) out = ops::scale(out, factor);
  Shape in_shape = a.shape();
  return make_result(out, name, {a}, [in_shape, factor](const Tensor& g, std::span<Tensor> gin) {
    // g (1) -> every element of a: view it with a's rank, then broadcast.
    Tensor ga = g.reshape(Shape(in_shape.size(), 1)).expand(in_shape);
    gin[0] = factor != 1.f ? ops::scale(ga, factor) : ga;
  });
}

Variable sum_all(const Variable& a) { return reduce_all(a, 1.f, "sum_all"); }
Variable mean_all(const Variable& a) { return reduce_all(a, 1.f / float(a.value().numel()), "mean_all"); }

}  // namespace mp::ag
