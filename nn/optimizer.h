// Optimizer: the base of AdamW and SGD. It holds the parameters that
// require a gradient, and only those: a frozen parameter gets no state at
// all, which is where PEFT saves optimizer memory. State tensors (Adam's m
// and v, SGD's momentum buffer) are allocated lazily, at a parameter's first
// update, under Tag::optimizer.
//
//   AdamW opt(model.named_parameters(), {.lr = 3e-4});
//   loss.backward(); opt.step(); opt.zero_grad();
//
// state_dict() / load_state_dict() turn the state into named tensors for a
// checkpoint ("m.<param>", "v.<param>", "step.<param>", "step"), so a run
// resumed from it continues bit for bit.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/module.h"

namespace mp::nn {

using TensorMap = std::map<std::string, Tensor>;

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient (a parameter without
  // one is skipped and its state left alone, as in PyTorch).
  void step();
  // Drop every parameter's gradient (PyTorch's set_to_none=True).
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }  // an LR schedule calls this before each step
  int64_t step_count() const { return step_count_; }  // step() calls so far

  // The (name, parameter) pairs this optimizer updates: the trainable ones.
  std::vector<NamedParameter> params() const;
  // Bytes of state allocated so far (Adam: 8 per element of each updated parameter).
  virtual size_t state_bytes() const;

  // "<state>.<param>" for each state tensor (e.g. "m.h.0.attn.c_attn.weight"),
  // "step.<param>" (i32, 1 element) per parameter updated at least once, and
  // "step" (i32, 1 element), the number of step() calls.
  virtual TensorMap state_dict() const;
  // Replace the state with a state_dict() of an optimizer of the same kind
  // over the same parameters. mp::Error naming every bad key: unknown names,
  // shape mismatches, a parameter with steps but no state.
  virtual void load_state_dict(const TensorMap& state);

 protected:
  // `state_names`: the per-parameter state tensors ("m", "v"), each shaped
  // like its parameter.
  Optimizer(const std::vector<NamedParameter>& params, double lr, std::vector<std::string> state_names);

  struct Slot {
    std::string name;
    Variable param;
    std::vector<Tensor> state;  // one per state name; undefined until first needed
    int64_t steps = 0;          // updates of this parameter, counting the current one
  };
  // Update one parameter; its gradient is defined and steps already counts this update.
  virtual void update(Slot& slot) = 0;
  // After every update() of a step (a sharded optimizer, parallel/zero_adamw.h,
  // updates its shard and gathers the parameters here).
  virtual void finish_step() {}
  // slot.state[i], allocated as zeros under Tag::optimizer on first use.
  Tensor& state_zeros(Slot& slot, size_t i);

 private:
  std::vector<Slot> slots_;
  std::vector<std::string> state_names_;
  double lr_;
  int64_t step_count_ = 0;
};

}  // namespace mp::nn
