// The trainer's promises: a resumed run continues bit for bit (killed runs:
// test_resume.cpp), and a non-finite loss stops the run naming the step.
#include <doctest/doctest.h>

#include "engine/error.h"
#include "tests/support/minipeft.h"
#include "nn/adamw.h"
#include "train/data/paths.h"
#include "train/train_step.h"
#include "train/trainer.h"
#include "tests/train/small_run.h"

using namespace mp;

namespace {

using test::small_run;

const models::Tokenizer& tokenizer() {
  static models::Tokenizer tok = models::Tokenizer::from_dir(train::default_tokenizer_dir());
  return tok;
}

}  // namespace

TEST_CASE("a resumed run gives bit-identical losses to an uninterrupted one") {
  for (const char* method : {"full", "lora", "prefix"}) {
    CAPTURE(method);
    test::TempDir a("resume_a"), b("resume_b");
    train::TrainResult whole = train::train(small_run(a.path.string(), method), tokenizer());
    REQUIRE(whole.steps.size() == 6);

    train::TrainConfig first = small_run(b.path.string(), method);
    first.stop_after = 3;
    train::TrainResult part1 = train::train(first, tokenizer());
    REQUIRE(part1.steps.size() == 3);
    train::TrainConfig second = small_run(b.path.string(), method);
    second.resume = true;
    train::TrainResult part2 = train::train(second, tokenizer());
    REQUIRE(part2.steps.size() == 3);

    for (int i = 0; i < 3; ++i) CHECK(part1.steps[size_t(i)].loss == whole.steps[size_t(i)].loss);
    for (int i = 0; i < 3; ++i) {
      CHECK(part2.steps[size_t(i)].step == i + 4);
      CHECK(part2.steps[size_t(i)].loss == whole.steps[size_t(i + 3)].loss);  // exactly, not approximately
    }
    CHECK(part2.final_val_loss == whole.final_val_loss);
    if (std::string(method) == "lora") {
      // The LoRA dropout masks the resume replayed did act: another p, which
      // draws as many masks, gives other losses. (gpt2-tiny's own dropout
      // would make p = 0 differ even if LoRA dropout did nothing.)
      train::TrainConfig other_p = small_run(b.path.string(), method);
      other_p.lora_dropout = 0.2f;
      CHECK(train::train(other_p, tokenizer()).steps.back().loss != whole.steps.back().loss);
    }
  }
}

TEST_CASE("--recompute gives the same losses, and a run resumes across the switch") {
  for (const char* method : {"full", "lora"}) {  // both with dropout (model and LoRA)
    CAPTURE(method);
    test::TempDir a("recompute_a"), b("recompute_b");
    train::TrainResult plain = train::train(small_run(a.path.string(), method), tokenizer());
    REQUIRE(plain.steps.size() == 6);

    train::TrainConfig first = small_run(b.path.string(), method);
    first.recompute = true;
    first.stop_after = 3;
    CHECK(train::build_model(first, tokenizer()).base->gradient_checkpointing());  // the switch reaches the model
    train::TrainResult part1 = train::train(first, tokenizer());
    train::TrainConfig second = small_run(b.path.string(), method);  // resumes without recompute
    second.resume = true;
    train::TrainResult part2 = train::train(second, tokenizer());
    REQUIRE(part1.steps.size() == 3);
    REQUIRE(part2.steps.size() == 3);
    for (size_t i = 0; i < 3; ++i) {
      CHECK(part1.steps[i].loss == plain.steps[i].loss);  // exactly
      CHECK(part1.steps[i].grad_norm == plain.steps[i].grad_norm);
      CHECK(part2.steps[i].loss == plain.steps[i + 3].loss);
    }
  }
}

TEST_CASE("resume refuses a checkpoint of another run") {
  test::TempDir d("resume_other");
  train::TrainConfig c = small_run(d.path.string(), "lora");
  c.stop_after = 1;
  train::train(c, tokenizer());
  train::TrainConfig other = small_run(d.path.string(), "lora");
  other.lora_r = 4;
  other.resume = true;
  CHECK_THROWS_WITH_AS(train::train(other, tokenizer()), doctest::Contains("different run"), Error);
}

TEST_CASE("a LoRA run on an nf4 base trains; its adapter loads on the nf4 base and on the f32 base; merge dequantizes") {
  test::TempDir d("nf4_base");
  train::TrainConfig c = small_run(d.path.string(), "lora");
  c.base_dtype = models::BaseDType::nf4;
  c.steps = 12;
  train::TrainResult run = train::train(c, tokenizer());
  REQUIRE(run.steps.size() == 12);
  CHECK(run.steps.front().loss - run.steps.back().loss > 0.05);
  train::TokenDataset data(train::load_token_ids(c.data, tokenizer()), c.val_fraction, c.data);
  const auto val = data.val_batches(c.batch, c.seq, c.eval_batches);
  // The saved adapter evaluates on an nf4 base to the loss the run reported,
  // and on the f32 base (the same adapter files) to nearly that.
  const std::string adapter = train::final_model_dir(d.path.string());
  train::TrainedModel q = train::load_model("gpt2-tiny", adapter, c.seed, models::BaseDType::nf4);
  CHECK(train::evaluate(q, val) == doctest::Approx(run.final_val_loss).epsilon(1e-6));
  train::TrainedModel f = train::load_model("gpt2-tiny", adapter, c.seed, models::BaseDType::f32);
  CHECK(train::evaluate(f, val) == doctest::Approx(run.final_val_loss).epsilon(2e-2));
  // merge on an nf4 base: an f32 model that says so, and evaluates as the nf4 run.
  test::Run r = test::minipeft("merge --model gpt2-tiny --base-dtype nf4 --adapter " + adapter + " --out " +
                               (d / "merged"));
  CAPTURE(r.output);
  REQUIRE(r.code == 0);
  CHECK(r.output.find("the nf4 base was dequantized") != std::string::npos);
  train::TrainedModel merged = train::load_model(d / "merged", "", 0);
  for (const auto& [name, p] : merged.base->named_parameters()) CHECK(p.value().dtype() == DType::f32);
  CHECK(train::evaluate(merged, val) == doctest::Approx(run.final_val_loss).epsilon(1e-4));
}

TEST_CASE("a LoRA run on a bf16 base follows the f32 run, and its checkpoint resumes only on a bf16 base") {
  test::TempDir d("bf16_base"), d32("f32_base");
  train::TrainConfig reference = small_run(d32.path.string(), "lora");
  reference.steps = 12;
  train::TrainResult f32_run = train::train(reference, tokenizer());
  train::TrainConfig c = small_run(d.path.string(), "lora");
  c.base_dtype = models::BaseDType::bf16;
  c.steps = 12;
  c.stop_after = 6;
  train::TrainResult first = train::train(c, tokenizer());
  REQUIRE(first.steps.size() == 6);
  train::TrainConfig f32_base = c;
  f32_base.base_dtype = models::BaseDType::f32;
  f32_base.resume = true;
  CHECK_THROWS_WITH_AS(train::train(f32_base, tokenizer()), doctest::Contains("different run"), Error);
  c.resume = true;
  c.stop_after = 0;
  train::TrainResult second = train::train(c, tokenizer());
  REQUIRE(second.steps.size() == 6);
  // Rounding the base's weights to bf16 moves the losses by far less than training does.
  for (size_t i = 0; i < 12; ++i) {
    const double loss = i < 6 ? first.steps[i].loss : second.steps[i - 6].loss;
    CHECK(loss == doctest::Approx(f32_run.steps[i].loss).epsilon(1e-2));
  }
  CHECK(f32_run.steps.front().loss - f32_run.steps.back().loss > 0.05);
  // The saved adapter evaluates on a bf16 base to the loss the run reported.
  train::TrainedModel m = train::load_model("gpt2-tiny", train::final_model_dir(d.path.string()), c.seed, models::BaseDType::bf16);
  train::TokenDataset data(train::load_token_ids(c.data, tokenizer()), c.val_fraction, c.data);
  CHECK(train::evaluate(m, data.val_batches(c.batch, c.seq, c.eval_batches)) == doctest::Approx(second.final_val_loss).epsilon(1e-6));
}

TEST_CASE("full fine-tuning in mixed precision (bf16 GEMMs, f32 master weights) follows the f32 run") {
  test::TempDir d32("f32_run"), d16("bf16_run");
  train::TrainConfig c = small_run(d32.path.string(), "full");
  train::TrainResult f32_run = train::train(c, tokenizer());
  c.out_dir = d16.path.string();
  c.precision = DType::bf16;
  train::TrainResult bf16_run = train::train(c, tokenizer());
  REQUIRE(bf16_run.steps.size() == f32_run.steps.size());
  bool moved = false;
  for (size_t i = 0; i < f32_run.steps.size(); ++i) {
    CHECK(bf16_run.steps[i].loss == doctest::Approx(f32_run.steps[i].loss).epsilon(1e-2));
    moved = moved || bf16_run.steps[i].loss != f32_run.steps[i].loss;
  }
  CHECK(moved);  // the bf16 GEMMs did run
  CHECK(bf16_run.peaks.by_tag[int(Tag::activations)] < f32_run.peaks.by_tag[int(Tag::activations)]);
}

TEST_CASE("a non-finite loss stops the run, naming the step and the checkpoint kept") {
  test::TempDir d("nan");
  train::TrainConfig c = small_run(d.path.string(), "full");
  c.lr = 1e30;  // the first update sends the weights to inf
  c.clip = 0;
  c.checkpoint_every = 1;
  // The first step's loss is finite (the weights are still sane); a later one is not.
  CHECK_THROWS_WITH_AS(train::train(c, tokenizer()), doctest::Contains("stopped. The last good checkpoint"), Error);
  CHECK(std::filesystem::exists(train::checkpoint_path(d.path.string())));
}

// Under mixed precision a PEFT model casts its frozen base to bf16 once and
// keeps the copies (TrainedModel::frozen_casts). The GEMMs then read the
// same bf16 values as when each step casts again, so the losses of steps
// that train the adapter (which must never be taken from the cache) are
// bit-identical to a model without the cache; and the copies are weights.
TEST_CASE("mixed precision keeps a frozen base's bf16 copies: the same losses as casting every step") {
  for (const char* method : {"lora", "prefix"}) {
    CAPTURE(method);
    train::TrainConfig c = small_run("", method);
    c.precision = DType::bf16;
    train::TrainedModel kept = train::build_model(c, tokenizer()), cast = train::build_model(c, tokenizer());
    REQUIRE(kept.frozen_casts);
    cast.frozen_casts.reset();
    kept.module().eval();  // no dropout: the two models' masks would differ (their instances' ids do)
    cast.module().eval();
    nn::AdamW opt_kept(train::trainable_parameters(kept.module())), opt_cast(train::trainable_parameters(cast.module()));
    train::TokenDataset data(train::load_token_ids(c.data, tokenizer()), c.val_fraction, c.data);
    std::vector<Tensor> batches = data.val_batches(c.batch, c.seq, 3);  // (B, T) windows
    REQUIRE(batches.size() == 3);
    const size_t weights_before = Ledger::instance().current(Tag::weights);
    std::vector<size_t> kept_bytes;  // the copies' bytes after each step
    for (const Tensor& b : batches) {
      const double with_cache = train::train_step(kept, opt_kept, {b}).loss;
      const double without = train::train_step(cast, opt_cast, {b}).loss;
      CHECK(with_cache == without);
      kept_bytes.push_back(Ledger::instance().current(Tag::weights) - weights_before);
    }
    // Made in the first step, once: at most 2 bytes per frozen f32 element.
    size_t frozen_halves = 0;
    for (const ag::Variable& p : kept.base->parameters())
      if (!p.requires_grad()) frozen_halves += size_t(p.value().numel()) * 2;
    CHECK(kept_bytes[0] > 0);
    CHECK(kept_bytes[0] <= frozen_halves);
    CHECK(kept_bytes[2] == kept_bytes[0]);
  }
}
