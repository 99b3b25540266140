// Shared by the activation-recompute tests (tests/models, tests/peft): small
// GPT-2 and OPT shapes with every dropout on, and the check that a training
// step gives the same loss and the same gradients, bit for bit, with and
// without CausalLM::gradient_checkpointing_enable.
#pragma once
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "autograd/variable.h"
#include "engine/memory.h"
#include "engine/ops.h"
#include "models/causal_lm.h"
#include "models/config.h"
#include "nn/module.h"
#include "nn/rng.h"

namespace mp::test {

// Three layers, a small vocabulary and dropout 0.1 everywhere (embeddings,
// residual branches, attention probabilities): GPT-2, OPT pre-LN, and OPT
// post-LN with project_in/out (opt-350m's layout).
inline std::vector<std::pair<std::string, models::ModelConfig>> recompute_configs() {
  auto small = [](models::ModelConfig c) {
    c.num_layers = 3;
    c.vocab_size = 300;
    c.max_positions = 64;
    c.embd_pdrop = c.resid_pdrop = c.attn_pdrop = 0.1f;
    return c;
  };
  models::ModelConfig post_ln = small(models::builtin_config("opt-tiny"));
  post_ln.do_layer_norm_before = false;
  post_ln.word_embed_proj_dim = post_ln.hidden_size / 2;
  return {{"gpt2", small(models::builtin_config("gpt2-tiny"))},
          {"opt pre-LN", small(models::builtin_config("opt-tiny"))},
          {"opt post-LN, project_in/out", post_ln}};
}

// Token ids (B, T) i32 below `vocab`, a fixed pattern.
inline Tensor recompute_ids(int64_t B, int64_t T, int vocab) {
  std::vector<int32_t> v(size_t(B * T));
  for (size_t i = 0; i < v.size(); ++i) v[i] = int32_t((i * 131 + 7) % size_t(vocab));
  return Tensor::from_vector(v, {B, T});
}

struct StepGrads {
  double loss = 0;
  size_t kept = 0;  // activation bytes alive between forward and backward
  std::vector<std::pair<std::string, Tensor>> grads;  // every trainable parameter's
};

// One training step of `loss` on `trained` (the model or its PEFT wrapper),
// with the global seed `seed` (so the dropout masks depend on it alone).
inline StepGrads training_step(nn::Module& trained, models::CausalLM& base, bool recompute,
                               const std::function<ag::Variable()>& loss, uint64_t seed) {
  base.gradient_checkpointing_enable(recompute);
  trained.train();
  trained.zero_grad();
  nn::manual_seed(seed);
  const size_t before = Ledger::instance().current(Tag::activations);
  ag::Variable l = loss();
  StepGrads out{l.item(), Ledger::instance().current(Tag::activations) - before, {}};
  l.backward();
  for (const auto& [name, p] : trained.named_parameters())
    if (p.requires_grad()) {
      REQUIRE_MESSAGE(p.grad().defined(), name << " got no gradient");
      out.grads.emplace_back(name, p.grad().clone());
    }
  trained.zero_grad();
  base.gradient_checkpointing_enable(false);
  return out;
}

// The step with recompute equals the step without, bit for bit; and the
// check can fail: dropout changes the loss (eval mode differs) and another
// seed (other masks) changes the gradients.
inline void check_recompute_is_exact(nn::Module& trained, models::CausalLM& base,
                                     const std::function<ag::Variable()>& loss) {
  StepGrads plain = training_step(trained, base, false, loss, 7);
  StepGrads again = training_step(trained, base, true, loss, 7);
  REQUIRE(!plain.grads.empty());
  CHECK(again.kept < plain.kept);  // the blocks were checkpointed
  CHECK(again.loss == plain.loss);
  REQUIRE(again.grads.size() == plain.grads.size());
  for (size_t i = 0; i < plain.grads.size(); ++i) {
    CAPTURE(plain.grads[i].first);
    CHECK(ops::max_abs_diff(again.grads[i].second, plain.grads[i].second) == 0.0);
  }

  StepGrads other = training_step(trained, base, true, loss, 8);
  bool masks_matter = false;
  for (size_t i = 0; i < plain.grads.size(); ++i)
    masks_matter |= ops::max_abs_diff(other.grads[i].second, plain.grads[i].second) > 0.0;
  CHECK_MESSAGE(masks_matter, "other dropout masks should change the gradients");
  trained.eval();
  double eval_loss;
  {
    ag::NoGrad no_grad;
    eval_loss = loss().item();
  }
  trained.train();
  CHECK(eval_loss != plain.loss);
}

}  // namespace mp::test
