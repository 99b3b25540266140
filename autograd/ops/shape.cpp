// Shape ops. The forward returns a view of the input's storage (no copy,
// except reshape of a non-contiguous tensor); the backward maps the gradient
// back to the input's layout. None of them saves a tensor.
#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace mp::ag {

// Same elements in a new shape: the gradient takes the input's shape back.
Variable reshape(const Variable& a, const Shape& shape) {
  Shape in_shape = a.shape();
  return make_result(a.value().reshape(shape), "reshape", {a},
                     [in_shape](const Tensor& g, std::span<Tensor> gin) { gin[0] = g.reshape(in_shape); });
}

// Swapping two axes is its own inverse.
Variable transpose(const Variable& a, int d0, int d1) {
  return make_result(a.value().transpose(d0, d1), "transpose", {a},
                     [d0, d1](const Tensor& g, std::span<Tensor> gin) { gin[0] = g.transpose(d0, d1); });
}

// out axis i is input axis order[i]; the gradient goes back through the
// inverse permutation: inverse[order[i]] = i.
Variable permute(const Variable& a, const std::vector<int>& order) {
  Tensor out = a.value().permute(order);
  std::vector<int> inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) inverse[size_t(a.value().wrap_dim(order[i]))] = int(i);
  return make_result(out, "permute", {a},
                     [inverse](const Tensor& g, std::span<Tensor> gin) { gin[0] = g.permute(inverse); });
}

// A slice [start, start + length) of one axis: the gradient is zero outside
// the slice and g inside it.
Variable narrow(const Variable& a, int axis, int64_t start, int64_t length) {
  Tensor out = a.value().narrow(axis, start, length);
  Shape in_shape = a.shape();
  DType dt = a.value().dtype();
  Device dev = a.value().device();
  return make_result(out, "narrow", {a},
                     [in_shape, dt, dev, axis, start, length](const Tensor& g, std::span<Tensor> gin) {
                       Tensor ga = Tensor::zeros(in_shape, dt, dev);
                       ga.narrow(axis, start, length).copy_from(g);
                       gin[0] = ga;
                     });
}

// Broadcast (a stride-0 view): each input element was used many times, so
// its gradient is the sum of theirs.
Variable expand(const Variable& a, const Shape& shape) {
  Shape in_shape = a.shape();
  return make_result(a.value().expand(shape), "expand", {a},
                     [in_shape](const Tensor& g, std::span<Tensor> gin) { gin[0] = ops::sum_to(g, in_shape); });
}

// Parts laid end to end along one axis: part i's gradient is its slice of g
// (a view).
Variable cat(const std::vector<Variable>& parts, int axis) {
  if (parts.empty()) fail("cat of no tensors");
  std::vector<Tensor> values;
  std::vector<int64_t> starts, lengths;
  int64_t start = 0;
  int wrapped = parts[0].value().wrap_dim(axis);
  for (const Variable& p : parts) {
    values.push_back(p.value());
    starts.push_back(start);
    lengths.push_back(p.size(wrapped));
    start += p.size(wrapped);
  }
  return make_result(ops::cat(values, wrapped), "cat", parts,
                     [starts, lengths, wrapped](const Tensor& g, std::span<Tensor> gin) {
                       for (size_t i = 0; i < gin.size(); ++i) gin[i] = g.narrow(wrapped, starts[i], lengths[i]);
                     });
}

}  // namespace mp::ag
