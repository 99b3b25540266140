// The memory planner (train/memory_plan.h) against the Ledger: one training
// step planned on the meta device must allocate, per tag and at the peak of
// the sum, exactly what the same step measures on the CPU, for every method
// and option that changes memory. Plus hand-derived counts (grads, optimizer
// state, HF's published parameter counts of the large shapes) and `info`.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "models/load.h"
#include "tests/support/minipeft.h"
#include "train/memory_plan.h"
#include "train/method_variants.h"
#include "train/data/paths.h"

using namespace mp;

namespace {

const models::Tokenizer& tokenizer() {
  static models::Tokenizer tok = models::Tokenizer::from_dir(train::default_tokenizer_dir());
  return tok;
}

train::TrainConfig run(const std::string& model, const std::string& method) {
  train::TrainConfig c;
  c.model = model;
  c.method = method;
  c.batch = 2;
  c.seq = 24;
  c.num_virtual_tokens = 5;
  c.lora_targets = model.starts_with("gpt2") ? std::vector<std::string>{"c_attn", "c_fc"}
                                             : std::vector<std::string>{"q_proj", "v_proj", "fc1"};
  return c;
}

void check_plan_equals_measurement(const train::TrainConfig& c) {
  const train::MemoryPlan plan = train::plan_training_memory(c, tokenizer());
  const train::MemoryPlan real = train::measure_training_memory(c, tokenizer());
  CHECK(plan.peak_total == real.peak_total);
  CHECK(plan.reserved_peak == real.reserved_peak);  // the allocator's blocks, page- and granule-rounded
  for (int t = 0; t < kTags; ++t) {
    CAPTURE(tag_name(Tag(t)));
    CHECK(plan.at_peak.by_tag[size_t(t)] == real.at_peak.by_tag[size_t(t)]);
    CHECK(plan.tag_peaks[size_t(t)] == real.tag_peaks[size_t(t)]);
  }
  CHECK(plan.at_peak.phase == real.at_peak.phase);
  CHECK(plan.at_peak.op == real.at_peak.op);
  CHECK(plan.trainable_params == real.trainable_params);
  // The optimizer keeps f32 m and v, and a gradient exists, for each trainable parameter only.
  CHECK(real.tag_peaks[size_t(Tag::grads)] == size_t(real.trainable_params) * 4);
  CHECK(real.tag_peaks[size_t(Tag::optimizer)] == size_t(real.trainable_params) * 8);
}

}  // namespace

TEST_CASE("planned bytes equal the ledger's measured bytes of a real step") {
  for (const char* model : {"gpt2-tiny", "opt-tiny"}) {
    CAPTURE(model);
    for (const char* method : {"full", "lora", "prompt", "prefix", "ia3"}) {
      CAPTURE(method);
      check_plan_equals_measurement(run(model, method));
    }
    train::TrainConfig c = run(model, "lora");
    SUBCASE("LoRA with dropout") { c.lora_dropout = 0.1f; }
    SUBCASE("IA3 with activation recompute") {
      c.method = "ia3";
      c.recompute = true;
    }
    SUBCASE("prefix tuning with its MLP") {
      c.method = "prefix";
      c.prefix_projection = true;
      c.encoder_hidden_size = 32;
    }
    SUBCASE("prompt tuning from text") {
      c.method = "prompt";
      c.prompt_init_text = "Permission is hereby granted";
    }
    SUBCASE("bf16 base") { c.base_dtype = models::BaseDType::bf16; }
    SUBCASE("nf4 base") { c.base_dtype = models::BaseDType::nf4; }
    SUBCASE("nf4 base, prefix tuning") {
      c.method = "prefix";
      c.base_dtype = models::BaseDType::nf4;
    }
    SUBCASE("mixed precision, full fine-tuning") {
      c.method = "full";
      c.precision = DType::bf16;
    }
    SUBCASE("mixed precision, LoRA (the frozen base's bf16 copies)") { c.precision = DType::bf16; }
    SUBCASE("mixed precision, prompt tuning with activation recompute") {
      c.method = "prompt";
      c.precision = DType::bf16;
      c.recompute = true;
    }
    SUBCASE("LoRA with activation recompute") { c.recompute = true; }
    SUBCASE("full fine-tuning with activation recompute and dropout") {
      c.method = "full";
      c.recompute = true;
    }
    SUBCASE("grad-accum 2, no clipping") {
      c.grad_accum = 2;
      c.clip = 0;
    }
    check_plan_equals_measurement(c);
  }
}

TEST_CASE("the benchmarks' method variants plan what they measure; an unknown variant is refused") {
  for (const train::MethodVariant& v : train::method_variants()) {
    CAPTURE(v.name);
    train::TrainConfig c = run("gpt2-tiny", "");
    v.apply(c);
    CHECK_FALSE(c.method.empty());  // each variant names its method
    check_plan_equals_measurement(c);
  }
  CHECK(train::method_variant("lora+recomp").title == std::string("LoRA r=8, recompute"));
  CHECK_THROWS_WITH_AS(train::method_variant("lora+vera"),
                       doctest::Contains("unknown method variant 'lora+vera' (one of full, full+mixed"), Error);
}

TEST_CASE("plan: LoRA's adapter, grads and optimizer bytes are exactly the adapter's") {
  train::TrainConfig c = run("gpt2-tiny", "lora");
  c.lora_targets = {"c_attn"};
  const int64_t C = 64, layers = 2, r = 8;
  const size_t adapter_bytes = size_t(layers * r * (C + 3 * C) * 4);  // A (r, C) + B (3C, r) per layer
  const train::MemoryPlan p = train::plan_training_memory(c, tokenizer());
  CHECK(p.tag_peaks[size_t(Tag::adapter)] == adapter_bytes);
  CHECK(p.tag_peaks[size_t(Tag::grads)] == adapter_bytes);
  CHECK(p.tag_peaks[size_t(Tag::optimizer)] == 2 * adapter_bytes);
}

TEST_CASE("plan: DoRA's adapter, grads and optimizer bytes are LoRA's plus a magnitude per output channel") {
  train::TrainConfig c = run("gpt2-tiny", "lora");
  c.lora_targets = {"c_attn"};
  c.use_dora = true;
  const int64_t C = 64, layers = 2, r = 8;
  const size_t adapter_bytes = size_t(layers * (r * (C + 3 * C) + 3 * C) * 4);  // A, B and m (3C) per layer
  const train::MemoryPlan p = train::plan_training_memory(c, tokenizer());
  CHECK(p.tag_peaks[size_t(Tag::adapter)] == adapter_bytes);
  CHECK(p.tag_peaks[size_t(Tag::grads)] == adapter_bytes);
  CHECK(p.tag_peaks[size_t(Tag::optimizer)] == 2 * adapter_bytes);
}

TEST_CASE("plan: LoRA dropout keeps no mask (no more activation bytes than without)") {
  train::TrainConfig c = run("gpt2-tiny", "lora");
  const size_t without = train::plan_training_memory(c, tokenizer()).tag_peaks[size_t(Tag::activations)];
  c.lora_dropout = 0.1f;
  const size_t with = train::plan_training_memory(c, tokenizer()).tag_peaks[size_t(Tag::activations)];
  CHECK(with == without);
}

TEST_CASE("plan: large shapes without weights, with HF's published parameter counts") {
  // facebook/opt-6.7b and gpt2-xl as HF counts them (model.num_parameters()).
  using Count = std::pair<const char*, int64_t>;
  for (auto [model, params] : {Count{"opt-6.7b", 6'658'473'984}, Count{"gpt2-xl", 1'557'611'200}}) {
    CAPTURE(model);
    train::TrainConfig c = run(model, "full");
    c.batch = 1;
    c.seq = 128;
    const train::MemoryPlan p = train::plan_training_memory(c, tokenizer());
    CHECK(p.all_params == params);
    CHECK(p.trainable_params == params);
    CHECK(p.tag_peaks[size_t(Tag::weights)] == size_t(params) * 4);
    CHECK(p.tag_peaks[size_t(Tag::grads)] == size_t(params) * 4);
    CHECK(p.tag_peaks[size_t(Tag::optimizer)] == size_t(params) * 8);
    CHECK(p.peak_total >= size_t(params) * 16);
  }
}

TEST_CASE("plan: errors name what a run cannot take") {
  train::TrainConfig c = run("gpt2-tiny", "lora");
  c.seq = 300;  // gpt2-tiny has 256 positions
  CHECK_THROWS_WITH_AS(train::plan_training_memory(c, tokenizer()), doctest::Contains("--seq 300"), Error);
  c = run("gpt2-tiny", "lora");
  c.lora_targets = {"q_proj"};
  CHECK_THROWS_WITH_AS(train::plan_training_memory(c, tokenizer()), doctest::Contains("q_proj"), Error);
  c = run("gpt3", "full");
  CHECK_THROWS_WITH_AS(train::plan_training_memory(c, tokenizer()), doctest::Contains("gpt3"), Error);
}

TEST_CASE("info: takes train's options, plans, and finds the largest batch that fits") {
  const std::string run_options =
      "--model gpt2-tiny --method lora --lora-r 4 --lora-alpha 32 --lora-dropout 0.1 --seq 32 --steps 7 "
      "--data nowhere.txt --out nowhere --checkpoint-every 3 --no-progress";
  test::Run r = test::minipeft("info " + run_options + " --batch 3 --json");
  CAPTURE(r.output);
  REQUIRE(r.code == 0);
  const nlohmann::json j = nlohmann::json::parse(r.output);
  train::TrainConfig c = run("gpt2-tiny", "lora");
  c.lora_targets = {};
  c.lora_r = 4;
  c.lora_alpha = 32;
  c.lora_dropout = 0.1f;
  c.batch = 3;
  c.seq = 32;
  const train::MemoryPlan p = train::plan_training_memory(c, tokenizer());
  CHECK(j["peak_total_bytes"].get<size_t>() == p.peak_total);
  CHECK(j["tag_peak_bytes"]["adapter"].get<size_t>() == p.tag_peaks[size_t(Tag::adapter)]);
  const size_t fixed = j["fixed_bytes"].get<size_t>();  // info's process, not this one
  CHECK(j["planned_rss_bytes"].get<size_t>() == fixed + std::max(p.peak_total, p.setup_peak));

  // --fit-in decides on the planned resident memory: a budget of info's fixed
  // part plus a peak between those of batch 5 and batch 6: the answer is 5.
  c.batch = 5;
  const size_t five = train::plan_training_memory(c, tokenizer()).peak_total;
  c.batch = 6;
  const size_t six = train::plan_training_memory(c, tokenizer()).peak_total;
  REQUIRE(six > five);
  r = test::minipeft("info " + run_options + " --json --fit-in " + std::to_string(fixed + (five + six) / 2) + "B");
  CAPTURE(r.output);
  REQUIRE(r.code == 0);
  CHECK(nlohmann::json::parse(r.output)["largest_batch"] == 5);

  r = test::minipeft("info --model gpt2-tiny --fit-in 12parsecs");
  CHECK(r.code == 1);
  CHECK(r.output.find("parsecs") != std::string::npos);
}

// --device cuda plans the CUDA backend's allocations (engine/meta/cuda_plan.cpp)
// on a machine without a GPU. Hand-derived: with a bf16 base and f32 compute,
// the LM head's product widens the tied (V, C) embedding whole to f32 on the
// GPU (the CPU multiplies bf16 panels instead), and every block is a multiple
// of 512 B. --fit-in then decides on the GPU memory the allocator reserves.
TEST_CASE("info --device cuda: the CUDA backend's plan, without a GPU") {
  train::TrainConfig c = run("gpt2-tiny", "lora");
  c.base_dtype = models::BaseDType::bf16;
  c.device = kCUDA;
  const train::MemoryPlan gpu = train::plan_training_memory(c, tokenizer());
  const models::ModelConfig mc = models::config_of(c.model);
  CHECK(gpu.tag_peaks[size_t(Tag::workspace)] >= size_t(mc.vocab_size * mc.hidden_size) * 4);
  CHECK(gpu.reserved_peak % 512 == 0);
  CHECK(gpu.reserved_peak >= gpu.peak_total);
  CHECK(gpu.device_bytes() == std::max(gpu.reserved_peak, gpu.setup_reserved_peak));
  c.device = kCPU;
  const train::MemoryPlan cpu = train::plan_training_memory(c, tokenizer());
  CHECK(cpu.tag_peaks[size_t(Tag::weights)] == gpu.tag_peaks[size_t(Tag::weights)]);  // the same model
  CHECK(cpu.device_bytes() == cpu.rss_bytes);

  const std::string options = "--model gpt2-tiny --method lora --lora-targets c_attn,c_fc --base-dtype bf16 "
                              "--seq 24 --device cuda --json";
  test::Run r = test::minipeft("info " + options + " --batch 2");
  CAPTURE(r.output);
  REQUIRE(r.code == 0);
  nlohmann::json j = nlohmann::json::parse(r.output);
  CHECK(j["device"] == "cuda:0");
  CHECK(j["planned_device_bytes"].get<size_t>() == gpu.device_bytes());
  CHECK(j["gemm"]["bf16"].get<std::string>().find("cublas") != std::string::npos);
  c.device = kCUDA;
  c.batch = 7;
  const size_t seven = train::plan_training_memory(c, tokenizer()).device_bytes();
  c.batch = 8;
  const size_t eight = train::plan_training_memory(c, tokenizer()).device_bytes();
  REQUIRE(eight > seven);
  r = test::minipeft("info " + options + " --fit-in " + std::to_string((seven + eight) / 2) + "B");
  CAPTURE(r.output);
  REQUIRE(r.code == 0);
  CHECK(nlohmann::json::parse(r.output)["largest_batch"] == 7);
}
