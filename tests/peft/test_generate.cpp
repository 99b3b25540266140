// Generation with prompt-tuning and prefix adapters: the soft prompt or the
// prefix goes in front of the prompt. Checked two independent ways: the
// first token equals the argmax of PeftModel::forward at the last position,
// and the KV-cache path picks the same tokens as recomputing everything.
#include <doctest/doctest.h>

#include "helpers.h"
#include "models/generate.h"
#include "models/load.h"
#include "peft/peft_model.h"

namespace mp::test {
namespace {

void check_generation(const std::string& base, const std::string& adapter_case) {
  auto pm = peft::load_peft_model(models::load_pretrained(fixtures_dir() + "/" + base),
                                  fixtures_dir() + "/peft/" + adapter_case);
  pm->eval();
  const std::vector<int32_t> prompt = {5, 77, 130, 9, 201};
  models::Prefill prefill = pm->generation_prefill();
  REQUIRE(prefill.length() > 0);

  // The first new token from a full PEFT forward: logits (1, [P +] T, V), last row.
  Tensor logits;
  {
    ag::NoGrad no_grad;
    logits = pm->forward(Tensor::from_vector(prompt, {1, int64_t(prompt.size())})).value();
  }
  const int64_t last = logits.size(1) - 1, V = logits.size(2);
  int32_t argmax = 0;
  for (int64_t v = 1; v < V; ++v)
    if (logits.at({0, last, v}) > logits.at({0, last, argmax})) argmax = int32_t(v);

  models::GenerateOptions o;
  o.max_new_tokens = 8;
  std::vector<int32_t> cached = models::generate(pm->base_model(), prompt, o, prefill);
  o.use_cache = false;
  std::vector<int32_t> recomputed = models::generate(pm->base_model(), prompt, o, prefill);
  REQUIRE(cached.size() == prompt.size() + 8);
  CHECK(cached[prompt.size()] == argmax);
  CHECK(cached == recomputed);
  // Without the prefill the base model continues differently (the adapter matters).
  o.use_cache = true;
  CHECK(models::generate(pm->base_model(), prompt, o) != cached);
}

TEST_CASE("generate with a prompt-tuning adapter") { check_generation("gpt2_tiny", "gpt2_prompt_random"); }
TEST_CASE("generate with a prefix adapter") {
  check_generation("gpt2_tiny", "gpt2_prefix");
  check_generation("opt_tiny", "opt_prefix");
}

}  // namespace
}  // namespace mp::test
