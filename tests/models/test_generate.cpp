// Generation: greedy ids identical to HF's generate() for every fixture model,
// the KV cache giving the same tokens as recomputing, sampling reproducible
// from the seed, and the errors for prompts that do not fit.
#include <doctest/doctest.h>

#include "models/generate.h"
#include "parity.h"

using namespace mp;
using namespace mp::test;

TEST_CASE("greedy generation matches HF, with and without the KV cache") {
  for (const char* name : {"gpt2_tiny", "opt_tiny", "opt_tiny_postln"}) {
    INFO(name);
    check_generate(name);
  }
}

TEST_CASE("sampling: the cache and recomputing pick the same tokens; the seed decides them") {
  auto model = models::create_model("gpt2-tiny", 11);
  std::vector<int32_t> prompt = {464, 2068, 7586, 21831};
  models::GenerateOptions o;
  o.do_sample = true;
  o.temperature = 0.8f;
  o.top_k = 50;
  o.top_p = 0.95f;
  o.max_new_tokens = 16;
  o.seed = 1234;
  std::vector<int32_t> cached = models::generate(*model, prompt, o);
  CHECK(cached.size() == prompt.size() + 16);
  CHECK(models::generate(*model, prompt, o) == cached);  // same seed, same tokens
  o.use_cache = false;
  CHECK(models::generate(*model, prompt, o) == cached);
  o.use_cache = true;
  o.seed = 99;
  CHECK(models::generate(*model, prompt, o) != cached);
}

TEST_CASE("generation stops after EOS and leaves the model's mode alone") {
  Fixture f("gpt2_tiny");
  auto model = f.model();
  model->train();
  std::vector<int32_t> prompt = f.info["generate"]["prompt_ids"].get<std::vector<int32_t>>();
  std::vector<int32_t> greedy = f.info["generate"]["output_ids"].get<std::vector<int32_t>>();
  models::GenerateOptions o;
  o.max_new_tokens = 12;
  o.eos_token_id = greedy[prompt.size() + 2];  // the third new token
  std::vector<int32_t> out = models::generate(*model, prompt, o);
  CHECK(out == std::vector<int32_t>(greedy.begin(), greedy.begin() + std::ptrdiff_t(prompt.size()) + 3));
  CHECK(model->is_training());
}

TEST_CASE("pick_token: greedy, top-k, top-p, temperature") {
  std::vector<float> logits = {0.f, 3.f, 1.f, 3.f, -2.f};
  models::GenerateOptions greedy;
  CHECK(models::pick_token(logits, greedy, 0.7) == 1);  // the first of the tied maxima

  models::GenerateOptions o;
  o.do_sample = true;
  o.top_k = 1;
  for (double u : {0.0, 0.5, 0.999}) CHECK(models::pick_token(logits, o, u) == 1);
  o.top_k = 2;  // ids 1 and 3, equally likely
  CHECK(models::pick_token(logits, o, 0.25) == 1);
  CHECK(models::pick_token(logits, o, 0.75) == 3);
  o.top_k = 0;
  o.top_p = 0.01f;  // only the most likely token
  CHECK(models::pick_token(logits, o, 0.999) == 1);
  o.top_p = 1.f;
  o.temperature = 1e-3f;  // near-greedy: the two maxima share all the mass
  CHECK(models::pick_token(logits, o, 0.999) == 3);
  // Without filters, every token is reachable: the last one at u close to 1.
  o.temperature = 1.f;
  CHECK(models::pick_token(std::vector<float>{0.f, 0.f, 0.f, 0.f}, o, 0.9) == 3);
}

TEST_CASE("prompts that do not fit the model's positions are errors saying so") {
  auto model = models::create_model("gpt2-tiny", 0);  // 256 positions
  models::GenerateOptions o;
  o.max_new_tokens = 10;
  std::vector<int32_t> too_long(257, 5);
  std::string e = error_of([&] { models::generate(*model, too_long, o); });
  CHECK(contains(e, "the prompt has 257 tokens, longer than the model's 256 positions"));

  std::vector<int32_t> almost(250, 5);
  e = error_of([&] { models::generate(*model, almost, o); });
  CHECK(contains(e, "prompt (250 tokens) + max_new_tokens (10) = 260 exceeds the model's 256 positions"));

  CHECK(contains(error_of([&] { models::generate(*model, std::vector<int32_t>{}, o); }), "empty"));
  o.do_sample = true;
  o.temperature = 0;
  CHECK(contains(error_of([&] { models::generate(*model, std::vector<int32_t>{1}, o); }), "temperature"));
}
