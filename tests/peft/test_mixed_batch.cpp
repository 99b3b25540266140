// Mixed batches (peft/mixed_batch.cpp): every row of one forward, or of one
// greedy generation, gives what that row gives alone with its adapter.
#include <doctest/doctest.h>

#include "engine/error.h"
#include "models/generate.h"
#include "models/load.h"
#include "nn/init.h"
#include "peft/peft_model.h"
#include "tests/peft/helpers.h"

using namespace mp;

namespace {

const std::string kBase = peft::PeftModel::kBaseName;

// Prompts of mixed lengths (right-padded in the batch), ids below the tiny vocabulary.
std::vector<std::vector<int32_t>> prompts(size_t n) {
  std::vector<std::vector<int32_t>> out;
  for (size_t i = 0; i < n; ++i) {
    std::vector<int32_t> p;
    for (size_t j = 0; j < 2 + (i * 3) % 5; ++j) p.push_back(int32_t(3 + (i * 37 + j * 11) % 250));
    out.push_back(p);
  }
  return out;
}

// Logits of one row alone, with its adapter active (or all adapters disabled).
std::vector<float> alone(peft::PeftModel& pm, const std::vector<int32_t>& prompt, const std::string& name) {
  if (name == kBase) pm.disable_adapters();
  else pm.enable_adapters(), pm.set_adapter(name);
  Tensor ids = Tensor::from_vector(prompt, {1, int64_t(prompt.size())});
  std::vector<float> out = pm.forward(ids).value().to_floats();
  pm.enable_adapters();
  return out;
}

// Checks the mixed batch's logits and greedy tokens row by row against the row alone.
void check_rows(peft::PeftModel& pm, const std::vector<std::string>& names) {
  ag::NoGrad no_grad;
  pm.eval();
  const std::vector<std::vector<int32_t>> ps = prompts(names.size());
  const int64_t B = int64_t(names.size());
  int64_t T = 0;
  for (const auto& p : ps) T = std::max(T, int64_t(p.size()));
  std::vector<int32_t> ids(size_t(B * T), 0), mask(size_t(B * T), 0);
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < ps[size_t(b)].size(); ++t) ids[size_t(b * T) + t] = ps[size_t(b)][t], mask[size_t(b * T) + t] = 1;
  Tensor id_tensor = Tensor::from_vector(ids, {B, T}), mask_tensor = Tensor::from_vector(mask, {B, T});
  ag::Variable mixed = pm.forward(id_tensor, &mask_tensor, names);  // (B, [P+]T, V)
  const std::vector<float> all = mixed.value().to_floats();
  const int64_t rows = mixed.size(1), V = mixed.size(2);
  double worst = 0, largest = 0;
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<float> one = alone(pm, ps[size_t(b)], names[size_t(b)]);  // (1, [P+]len, V)
    for (size_t i = 0; i < one.size(); ++i) {  // the row's virtual and real positions
      worst = std::max(worst, double(std::abs(one[i] - all[size_t(b * rows * V) + i])));
      largest = std::max(largest, double(std::abs(one[i])));
    }
  }
  // A row alone and the same row in a batch go through GEMMs of other sizes
  // (OpenBLAS picks other kernels), which round differently in the last bits:
  // the difference is measured relative to the logits' scale.
  MESSAGE("mixed batch vs rows alone: logits max abs difference " << worst << ", largest |logit| " << largest);
  CHECK(worst <= 1e-6 * std::max(1.0, largest));

  const std::vector<std::vector<int32_t>> together = pm.generate(ps, names, 8);
  for (int64_t b = 0; b < B; ++b) {
    const std::string& n = names[size_t(b)];
    if (n == kBase) pm.disable_adapters();
    else pm.enable_adapters(), pm.set_adapter(n);
    models::GenerateOptions g;
    g.max_new_tokens = 8;
    CHECK(together[size_t(b)] == models::generate(pm.base_model(), ps[size_t(b)], g, pm.generation_prefill()));
    pm.enable_adapters();
  }
}

}  // namespace

TEST_CASE("a mixed batch over two LoRA adapters and the base: each row as alone") {
  auto pm = peft::load_peft_model(models::load_pretrained(test::fixtures_dir() + "/gpt2_tiny"),
                                  test::fixtures_dir() + "/peft/gpt2_lora", "a");
  // A second adapter on other layers (c_attn and mlp.c_fc), with a non-zero B.
  peft::LoraConfig other;
  other.r = 2;
  other.lora_alpha = 4;
  other.fan_in_fan_out = true;
  other.target_modules = {"c_attn", "c_fc"};
  pm->add_adapter("b", peft::PeftConfig::lora(other));
  uint64_t seed = 7;
  for (auto& [path, linear] : pm->lora_layers()) {
    auto& lora = static_cast<peft::LoraLinear&>(*linear->adapter());
    if (lora.has_adapter("b")) nn::init::normal_(lora.weights("b").B.value(), 0.0, 0.2, seed++);
  }
  check_rows(*pm, {"a", kBase, "b", "a", "b", kBase, "b", "a"});
  CHECK_THROWS_WITH_AS(pm->forward(Tensor::zeros({2, 3}, DType::i32), nullptr, {"a", "c"}),
                       doctest::Contains("no adapter 'c'"), Error);
  CHECK_THROWS_WITH_AS(pm->forward(Tensor::zeros({2, 3}, DType::i32), nullptr, {"a"}),
                       doctest::Contains("1 adapter names for input ids (2, 3)"), Error);
  // One adapter on every row is the plain batched forward, bit for bit (the
  // mask multiplies its update by 1 exactly).
  {
    ag::NoGrad no_grad;
    Tensor ids = Tensor::from_vector(std::vector<int32_t>{5, 6, 7, 8, 9, 10}, {2, 3});
    pm->set_adapter("b");
    CHECK(pm->forward(ids, nullptr, {"b", "b"}).value().to_floats() == pm->forward(ids).value().to_floats());
    pm->disable_adapters();
    const std::vector<float> base = pm->forward(ids).value().to_floats();
    pm->enable_adapters();
    CHECK(pm->forward(ids, nullptr, {kBase, kBase}).value().to_floats() == base);
  }
  // Afterwards every layer runs the active adapter again.
  pm->set_adapter("a");
  Tensor ids = Tensor::from_vector(prompts(1)[0], {1, int64_t(prompts(1)[0].size())});
  std::vector<float> again = pm->forward(ids).value().to_floats(), before = alone(*pm, prompts(1)[0], "a");
  CHECK(again == before);
}

TEST_CASE("a mixed batch over two soft prompts, and over two prefixes: each row as alone") {
  for (auto [first, second] : {std::pair{"gpt2_prompt_random", "gpt2_prompt_text"}, std::pair{"gpt2_prefix", "gpt2_prefix_proj"}}) {
    CAPTURE(std::string(first));
    auto pm = peft::load_peft_model(models::load_pretrained(test::fixtures_dir() + "/gpt2_tiny"),
                                    test::fixtures_dir() + "/peft/" + first, "p");
    pm->load_adapter(test::fixtures_dir() + "/peft/" + second, "q");
    check_rows(*pm, {"p", "q", "q", "p", "q"});
    CHECK_THROWS_WITH_AS(pm->forward(Tensor::zeros({2, 3}, DType::i32), nullptr, {"p", kBase}),
                         doctest::Contains("needs an adapter on every row"), Error);
  }
}

TEST_CASE("a mixed batch of LoRA and base rows on OPT (positions from the mask, left-padded generation)") {
  auto pm = peft::load_peft_model(models::load_pretrained(test::fixtures_dir() + "/opt_tiny"),
                                  test::fixtures_dir() + "/peft/opt_lora", "a");
  check_rows(*pm, {"a", kBase, "a", kBase, "a", "a"});
}
