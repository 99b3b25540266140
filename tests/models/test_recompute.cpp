// Activation recompute (CausalLM::gradient_checkpointing_enable) for full
// fine-tuning of GPT-2 and OPT: the same loss and gradients bit for bit, with
// dropout on (nn::recompute replays the masks), and fewer activation bytes.
// The PEFT methods are checked in tests/peft/test_recompute.cpp.
#include "recompute_check.h"

#include "autograd/autocast.h"
#include "engine/memory.h"
#include "models/load.h"

using namespace mp;
using namespace mp::test;

TEST_CASE("recompute: full fine-tuning gives the same loss and gradients, bit for bit") {
  for (const auto& [name, config] : recompute_configs()) {
    CAPTURE(name);
    auto model = models::make_model(config, 11);
    Tensor ids = recompute_ids(2, 12, config.vocab_size);  // (B, T)
    check_recompute_is_exact(*model, *model, [&] { return model->loss(ids, ids); });
    SUBCASE("mixed precision: the replay in backward computes in bf16 as the forward did") {
      check_recompute_is_exact(*model, *model, [&] {
        ag::AutocastScope bf16(DType::bf16);  // backward runs after this scope closes
        return model->loss(ids, ids);
      });
    }
    SUBCASE("with left padding: the mask is kept for the replay") {
      // The mask lives only inside the forward call, as a caller's would: the
      // replay in backward must not read it through the caller's pointer.
      check_recompute_is_exact(*model, *model, [&] {
        std::vector<int32_t> m(24, 1);
        m[0] = m[1] = m[12] = 0;                                // (2, 12): rows start with padding
        Tensor mask = Tensor::from_vector(m, {2, 12});          // (B, S)
        models::ForwardOptions opt;
        opt.attention_mask = &mask;
        return model->loss(ids, ids, opt);
      });
    }
  }
}

TEST_CASE("recompute: eval and no-grad forwards are unchanged") {
  auto config = recompute_configs()[0].second;
  auto model = models::make_model(config, 12);
  Tensor ids = recompute_ids(1, 10, config.vocab_size);
  auto logits = [&](bool recompute, bool training) {
    model->gradient_checkpointing_enable(recompute);
    model->train(training);
    nn::manual_seed(3);
    ag::NoGrad no_grad;
    return model->forward(ids).value();
  };
  CHECK(ops::max_abs_diff(logits(true, false), logits(false, false)) == 0.0);
  CHECK(ops::max_abs_diff(logits(true, true), logits(false, true)) == 0.0);  // dropout, but no graph
}

TEST_CASE("recompute: the activations peak of a training step is lower") {
  // GPT-2 shape, 6 layers, T = 128: each block keeps ~20 (B, T, C)-sized
  // tensors for backward; with recompute only its input stays, plus one
  // block's worth while it is replayed.
  models::ModelConfig config = recompute_configs()[0].second;
  config.num_layers = 6;
  config.max_positions = 128;
  auto model = models::make_model(config, 13);
  Tensor ids = recompute_ids(2, 128, config.vocab_size);
  auto activations_peak = [&](bool recompute) {
    model->gradient_checkpointing_enable(recompute);
    nn::manual_seed(1);
    Ledger& ledger = Ledger::instance();
    ledger.reset_peaks();
    const size_t before = ledger.current(Tag::activations);
    ag::Variable loss;
    {
      TagScope scope(Tag::activations);
      loss = model->loss(ids, ids);
    }
    {
      TagScope scope(Tag::workspace);
      loss.backward();
    }
    model->zero_grad();
    return ledger.peak(Tag::activations) - before;
  };
  const size_t plain = activations_peak(false), recompute = activations_peak(true);
  MESSAGE("activations peak: plain " << plain << " B, recompute " << recompute << " B");
  // 6 blocks' activations against 6 inputs plus one block's: well under half.
  CHECK(recompute * 2 < plain);
}
