#include "nn/recompute.h"

#include "nn/rng.h"

namespace mp::nn {

ag::Variable recompute(ag::RecomputeFn fn, const std::vector<ag::Variable>& inputs) {
  RngState at_forward = rng_state();
  bool first = true;
  auto replaying = [fn = std::move(fn), at_forward, first](const std::vector<ag::Variable>& in) mutable {
    if (first) {  // the real forward: draw seeds as usual
      first = false;
      return fn(in);
    }
    RngState now = rng_state();  // the replay: rewind, run, then put the clock back
    set_rng_state(at_forward);
    ag::Variable out = fn(in);
    set_rng_state(now);
    return out;
  };
  return ag::recompute(std::move(replaying), inputs);
}

}  // namespace mp::nn
