// A frozen base in bf16 (nn/weight_dtype.h) against an independent path: an
// f32 model holding the same bf16-rounded values. Widening bf16 to f32 is
// exact, so the two must agree to f32 rounding; a difference beyond that is a
// bug in the bf16 paths (matmul widening blocks of the weight, embedding rows
// converted on lookup, the tied head reading the bf16 table transposed).
#include <doctest/doctest.h>

#include <map>

#include "engine/error.h"
#include "helpers.h"
#include "models/generate.h"
#include "models/load.h"
#include "nn/adamw.h"
#include "nn/rng.h"
#include "peft/peft_model.h"

namespace mp::test {
namespace {

using ag::Variable;

std::shared_ptr<models::CausalLM> load(const std::string& base, DType weight_dtype) {
  return models::load_pretrained(fixtures_dir() + "/" + base, weight_dtype);
}

Tensor batch_ids() { return pattern_ids(2, 12, 256); }

std::map<std::string, Variable> by_name(const nn::Module& m) {
  std::map<std::string, Variable> out;
  for (const auto& [name, p] : m.named_parameters()) out.emplace(name, p);
  return out;
}

// The f32 model of `base` holding exactly the values of `lo`, a bf16 model of it.
std::shared_ptr<models::CausalLM> widened(const std::string& base, const models::CausalLM& lo) {
  auto hi = load(base, DType::f32);
  auto lo_params = by_name(lo);
  for (auto [name, p] : hi->named_parameters()) p.value().copy_from(lo_params.at(name).value());
  return hi;
}

peft::PeftConfig method_config(const std::string& method, const std::string& base) {
  if (method == "lora") {
    std::vector<std::string> targets = base == "gpt2_tiny"
                                           ? std::vector<std::string>{"c_attn", "c_proj", "c_fc"}
                                           : std::vector<std::string>{"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"};
    return peft::PeftConfig::lora(
        {.r = 4, .lora_alpha = 8, .target_modules = targets, .init_lora_weights = peft::LoraInit::none});
  }
  if (method == "prompt") return peft::PeftConfig::prompt_tuning({.num_virtual_tokens = 5});
  return peft::PeftConfig::prefix_tuning({.num_virtual_tokens = 5});
}

TEST_CASE("bf16 base: weight matrices and embedding tables load as bf16, biases and layer norms as f32") {
  for (std::string base : {"gpt2_tiny", "opt_tiny"}) {
    CAPTURE(base);
    auto lo = load(base, DType::bf16);
    auto hi = by_name(*load(base, DType::f32));
    size_t bf16_bytes = 0, f32_bytes = 0;
    for (const auto& [name, p] : lo->named_parameters()) {
      CAPTURE(name);
      const Tensor& t = p.value();
      CHECK(t.dtype() == (t.dim() == 2 ? DType::bf16 : DType::f32));
      (t.dtype() == DType::bf16 ? bf16_bytes : f32_bytes) += t.nbytes();
      // Each value is the f32 checkpoint's, rounded to nearest even in bf16.
      std::vector<float> got = t.to_floats(), want = hi.at(name).value().to_floats();
      size_t wrong = 0;
      for (size_t i = 0; i < got.size(); ++i)
        wrong += got[i] != (t.dtype() == DType::bf16 ? bf16_to_float(float_to_bf16(want[i])) : want[i]);
      CHECK(wrong == 0);
    }
    CHECK(bf16_bytes > 10 * f32_bytes);  // the matrices are nearly all of the model
  }
}

TEST_CASE("bf16 base: logits, loss and adapter gradients equal an f32 model holding the same rounded weights") {
  for (std::string base : {"gpt2_tiny", "opt_tiny"}) {
    for (std::string method : {"lora", "prompt", "prefix"}) {
      CAPTURE(base);
      CAPTURE(method);
      auto lo = load(base, DType::bf16);
      auto hi = widened(base, *lo);

      nn::manual_seed(7);
      auto pm_lo = peft::get_peft_model(lo, method_config(method, base));
      nn::manual_seed(7);
      auto pm_hi = peft::get_peft_model(hi, method_config(method, base));
      pm_lo->eval();
      pm_hi->eval();
      const Tensor ids = batch_ids();
      CHECK(rel_error(pm_lo->forward(ids).value(), pm_hi->forward(ids).value()) < 1e-5);
      Variable loss_lo = pm_lo->loss(ids, ids), loss_hi = pm_hi->loss(ids, ids);
      CHECK(std::abs(loss_lo.item() - loss_hi.item()) < 1e-5);
      loss_lo.backward();
      loss_hi.backward();
      auto grads_hi = by_name(*pm_hi);
      int compared = 0;
      for (const auto& [name, p] : pm_lo->named_parameters()) {
        if (!p.requires_grad()) continue;
        CAPTURE(name);
        REQUIRE(p.grad().defined());
        CHECK(rel_error(p.grad(), grads_hi.at(name).grad()) < 1e-4);
        ++compared;
      }
      CHECK(compared > 0);
    }
  }
}

TEST_CASE("bf16 base: greedy generation with the KV cache picks the f32 model's tokens") {
  auto lo = load("gpt2_tiny", DType::bf16);
  auto hi = widened("gpt2_tiny", *lo);
  const std::vector<int32_t> prompt = {5, 77, 130, 9, 201};
  models::GenerateOptions o;
  o.max_new_tokens = 12;
  CHECK(models::generate(*lo, prompt, o) == models::generate(*hi, prompt, o));
}

TEST_CASE("bf16 base: optimizers refuse a trainable bf16 parameter; PEFT freezes the base; merge needs f32") {
  auto model = std::shared_ptr<models::CausalLM>(models::make_model(models::builtin_config("gpt2-tiny"), 0, DType::bf16));
  CHECK_THROWS_WITH_AS(nn::AdamW(model->named_parameters()), doctest::Contains("is bf16 and trainable"), Error);
  auto pm = peft::get_peft_model(model, method_config("lora", "gpt2_tiny"));
  CHECK_NOTHROW(nn::AdamW(pm->named_parameters()));
  CHECK_THROWS_WITH_AS(pm->merge_adapter(), doctest::Contains("f32 base weight"), Error);
}

}  // namespace
}  // namespace mp::test
