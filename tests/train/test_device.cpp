// Training on a device that is not the host: the sim device (engine/device.h)
// runs the CPU's kernels, so every loss must equal the CPU run's bit for bit,
// and it refuses host reads, so a forgotten .to(device) or a host read in the
// trainer fails here instead of on the first GPU. It also counts the copies
// between the host and the device: a training step makes at most one.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/backend.h"
#include "engine/error.h"
#include "tests/support/minipeft.h"
#include "train/data/paths.h"
#include "models/generate.h"
#include "nn/adamw.h"
#include "train/data/pairs.h"
#include "train/memory_plan.h"
#include "train/pairs_eval.h"
#include "train/data/random_tokens.h"
#include "train/train_step.h"
#include "train/trainer.h"
#include "tests/train/small_run.h"

using namespace mp;

namespace {

const models::Tokenizer& tokenizer() {
  static models::Tokenizer tok = models::Tokenizer::from_dir(train::default_tokenizer_dir());
  return tok;
}

train::TrainConfig small_run(const std::string& out, const std::string& method, Device device) {
  train::TrainConfig c = test::small_run(out, method);
  c.steps = 4;
  c.eval_every = 2;
  c.device = device;
  return c;
}

void check_same_run(const train::TrainResult& sim, const train::TrainResult& cpu) {
  REQUIRE(sim.steps.size() == cpu.steps.size());
  for (size_t i = 0; i < cpu.steps.size(); ++i) {
    CAPTURE(i);
    CHECK(sim.steps[i].loss == cpu.steps[i].loss);  // exactly: the same kernels on the same values
    // The CPU sums the squares in its own loop, a device through ops (another order).
    CHECK(sim.steps[i].grad_norm == doctest::Approx(cpu.steps[i].grad_norm).epsilon(1e-12));
    CHECK(sim.steps[i].val_loss == cpu.steps[i].val_loss);
  }
}

}  // namespace

TEST_CASE("train on the sim device: the CPU's losses, bit for bit, for every method") {
  for (const char* method : {"full", "lora", "prompt", "prefix", "ia3"}) {
    CAPTURE(method);
    test::TempDir a("device_cpu"), b("device_sim");
    check_same_run(train::train(small_run(b.path.string(), method, kSim), tokenizer()),
                   train::train(small_run(a.path.string(), method, kCPU), tokenizer()));
  }
}

// Each step keeps the count of targets, the loss's gradient, the positions,
// the gradient norm and the clip on the device, and reads the losses and the
// norm back together: one copy per optimizer step (a GPU's one wait). The
// counter (engine/tensor.cpp) sees every Tensor::to between the host and a device.
TEST_CASE("a training step on the sim device copies to the host once, with the CPU's losses") {
  struct Method {
    const char* name;
    bool dora;
  };
  for (Method method : {Method{"full", false}, Method{"lora", false}, Method{"lora", true}, Method{"prefix", false},
                        Method{"prompt", false}, Method{"ia3", false}}) {
    for (int64_t grad_accum : {1, 2}) {
      for (double clip : {0.0, 1e-3}) {  // 1e-3: below every norm here, so the clip scales
        CAPTURE(method.name);
        CAPTURE(method.dora);
        CAPTURE(grad_accum);
        CAPTURE(clip);
        std::vector<std::vector<double>> losses;  // per device, per step: each micro-batch's
        for (Device device : {kCPU, kSim}) {
          train::TrainConfig c = small_run("", method.name, device);
          c.use_dora = method.dora;
          c.grad_accum = grad_accum;
          c.clip = clip;
          train::TrainedModel m = train::build_model(c, tokenizer());
          nn::AdamW opt(train::trainable_parameters(m.module()));
          std::vector<train::Batch> micro;
          for (int64_t k = 0; k < grad_accum; ++k)
            micro.push_back(train::random_token_ids(c.batch, c.seq, m.base->vocab_size(), uint64_t(k)).to(device));
          std::vector<double>& seen = losses.emplace_back();
          for (int step = 0; step < 3; ++step) {
            const uint64_t before = host_transfers();
            const train::StepOutcome out = train::train_step(m, opt, micro, {.clip = clip});
            CHECK(host_transfers() - before == (device == kCPU ? 0u : 1u));
            CHECK(std::isfinite(out.grad_norm));
            seen.insert(seen.end(), out.losses.begin(), out.losses.end());
          }
        }
        CHECK(losses[1] == losses[0]);  // exactly: the same kernels on the same values
      }
    }
  }
}

// OPT's positions come from the attention mask (HF's cumsum rule), made on
// the device: a padded batch costs no more copies than a full one.
TEST_CASE("OPT with a padded batch on the sim device: one copy per step, the CPU's losses") {
  std::vector<std::vector<double>> losses;
  for (Device device : {kCPU, kSim}) {
    train::TrainConfig c = small_run("", "lora", device);
    c.model = "opt-tiny";
    c.lora_targets = {"q_proj", "v_proj"};
    train::TrainedModel m = train::build_model(c, tokenizer());
    nn::AdamW opt(train::trainable_parameters(m.module()));
    Tensor ids = train::random_token_ids(2, 8, m.base->vocab_size(), 3);  // (B, T)
    // Row 0 left-padded by 3, row 1 full; the loss on the last 4 tokens of each.
    Tensor mask = Tensor::from_vector(std::vector<int32_t>{0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {2, 8});
    std::vector<int32_t> label_values(16, -100);
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t t = 4; t < 8; ++t) label_values[size_t(b * 8 + t)] = ids.to(kCPU).data<int32_t>()[b * 8 + t];
    Tensor labels = Tensor::from_vector(label_values, {2, 8});
    const std::vector<train::Batch> micro{train::Batch(ids, labels, mask).to(device)};
    std::vector<double>& seen = losses.emplace_back();
    for (int step = 0; step < 2; ++step) {
      const uint64_t before = host_transfers();
      seen.push_back(train::train_step(m, opt, micro, {}).loss);
      CHECK(host_transfers() - before == (device == kCPU ? 0u : 1u));
    }
  }
  CHECK(losses[1] == losses[0]);
}

TEST_CASE("train on the sim device: NF4 base, DoRA, mixed precision, recompute, pairs") {
  test::TempDir a("device_cpu"), b("device_sim");
  train::TrainConfig c = small_run("", "lora", kCPU);
  SUBCASE("nf4 base") { c.base_dtype = models::BaseDType::nf4; }
  SUBCASE("DoRA with dropout, nf4 base") {
    c.use_dora = true;
    c.lora_dropout = 0.1f;
    c.base_dtype = models::BaseDType::nf4;
  }
  SUBCASE("mixed precision") { c.precision = DType::bf16; }
  SUBCASE("recompute, grad-accum 2") {
    c.recompute = true;
    c.grad_accum = 2;
  }
  SUBCASE("prompt/completion pairs") { c.data = test::data_path("pairs_example.jsonl"); }
  train::TrainConfig on_sim = c;
  c.out_dir = a.path.string();
  on_sim.out_dir = b.path.string();
  on_sim.device = kSim;
  check_same_run(train::train(on_sim, tokenizer()), train::train(c, tokenizer()));
}

TEST_CASE("train on the sim device: a resumed run continues bit for bit") {
  test::TempDir a("device_whole"), b("device_resumed");
  train::TrainResult whole = train::train(small_run(a.path.string(), "lora", kSim), tokenizer());
  train::TrainConfig first = small_run(b.path.string(), "lora", kSim);
  first.stop_after = 2;
  train::train(first, tokenizer());
  train::TrainConfig second = small_run(b.path.string(), "lora", kSim);
  second.resume = true;
  train::TrainResult rest = train::train(second, tokenizer());
  REQUIRE(rest.steps.size() == 2);
  for (size_t i = 0; i < 2; ++i) CHECK(rest.steps[i].loss == whole.steps[i + 2].loss);
}

TEST_CASE("a device the machine does not have is refused before any work, by name") {
  train::TrainConfig c = small_run("", "lora", kCPU);
  c.device = kMeta;
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("--device meta holds shapes"), Error);
  if (!has_backend(DeviceType::cuda)) {
    c.device = kCUDA;
    c.data = "/nonexistent/never-read.txt";  // refused before the data is read
    CHECK_THROWS_WITH_AS(train::train(c, tokenizer()), doctest::Contains("no backend for device cuda:0"), Error);
    // The planner still plans a CUDA run (on the meta device).
    c.data.clear();
    CHECK(train::plan_training_memory(c, tokenizer()).peak_total > 0);
  }
}

TEST_CASE("a saved adapter evaluates, scores pairs and generates on the sim device as on the CPU") {
  test::TempDir out("device_adapter");
  train::TrainConfig c = small_run(out.path.string(), "lora", kCPU);
  train::train(c, tokenizer());
  const std::string adapter = train::final_model_dir(out.path.string());
  train::TrainedModel cpu = train::load_model("gpt2-tiny", adapter, 0, models::BaseDType::f32, kCPU);
  train::TrainedModel sim = train::load_model("gpt2-tiny", adapter, 0, models::BaseDType::f32, kSim);
  CHECK(sim.device() == kSim);

  const std::vector<int32_t> ids = tokenizer().encode("Permission is hereby granted, free of charge, to any person");
  Tensor window = Tensor::from_vector(ids, {1, int64_t(ids.size())});  // (1, T)
  CHECK(train::evaluate(sim, std::vector<Tensor>{window.to(kSim)}) == train::evaluate(cpu, std::vector<Tensor>{window}));

  train::Examples ex = train::tokenize_pairs(train::read_pairs_file(test::data_path("pairs_example.jsonl")), tokenizer(),
                                             64, "pairs_example.jsonl");
  std::vector<const train::Example*> rows;
  for (size_t i = 0; i < 6; ++i) rows.push_back(&ex.examples[i]);
  const train::PairsScore on_sim = train::score_pairs(sim, rows, 4, tokenizer().eos_id());
  const train::PairsScore on_cpu = train::score_pairs(cpu, rows, 4, tokenizer().eos_id());
  CHECK(on_sim.nll == on_cpu.nll);
  CHECK(on_sim.exact == on_cpu.exact);

  models::GenerateOptions gen;
  gen.max_new_tokens = 8;
  gen.eos_token_id = -1;
  CHECK(models::generate(*sim.base, ids, gen) == models::generate(*cpu.base, ids, gen));
}
