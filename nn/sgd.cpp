#include "nn/sgd.h"

#include "engine/error.h"
#include "engine/ops.h"

namespace mp::nn {

SGD::SGD(const std::vector<NamedParameter>& params, const SGDOptions& options)
    : Optimizer(params, options.lr, {"momentum_buffer"}), options_(options) {
  if (!(options.lr >= 0)) fail("SGD: lr must be >= 0, not {}", options.lr);
  if (!(options.momentum >= 0)) fail("SGD: momentum must be >= 0, not {}", options.momentum);
  if (!(options.weight_decay >= 0)) fail("SGD: weight_decay must be >= 0, not {}", options.weight_decay);
  if (options.nesterov && (options.momentum <= 0 || options.dampening != 0))
    fail("SGD: nesterov needs momentum > 0 and dampening 0");
}

void SGD::update(Slot& slot) {
  const Tensor& p = slot.param.value();
  const SGDOptions& o = options_;
  // d = g (+ weight_decay * p), a copy whenever it will be changed: the
  // parameter's gradient itself is never modified.
  Tensor d = slot.param.grad();
  if (o.weight_decay != 0) {
    d = d.clone();
    ops::axpby(float(o.weight_decay), p, 1.f, d);
  }
  if (o.momentum != 0) {
    Tensor& buf = slot.state[0];
    if (!buf.defined()) {
      buf = d.clone(Tag::optimizer);  // the first step: buf = d
    } else {
      ops::axpby(float(1 - o.dampening), d, float(o.momentum), buf);  // buf = momentum*buf + (1-dampening)*d
    }
    if (o.nesterov) {
      if (o.weight_decay == 0) d = d.clone();
      ops::axpby(float(o.momentum), buf, 1.f, d);  // d += momentum * buf
    } else {
      d = buf;
    }
  }
  ops::axpby(float(-lr()), d, 1.f, p);  // p -= lr * d
}

}  // namespace mp::nn
