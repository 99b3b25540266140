// minipeft eval on pairs (train/pairs_eval.h): exact match is what greedy
// generation gives, the loss is the token-weighted mean over completions.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "models/generate.h"
#include "models/load.h"
#include "peft/peft_model.h"
#include "tests/support/minipeft.h"
#include "train/pairs_eval.h"

using namespace mp;

namespace {

train::TrainedModel fixture_model(const std::string& adapter = "") {
  train::TrainedModel m;
  m.base = models::load_pretrained(test::fixtures_dir() + "/gpt2_tiny");
  if (!adapter.empty()) m.peft = peft::load_peft_model(m.base, test::fixtures_dir() + "/peft/" + adapter);
  m.module().eval();
  return m;
}

}  // namespace

TEST_CASE("exact match agrees with greedy generation") {
  train::TrainedModel m = fixture_model();
  const std::vector<std::vector<int32_t>> prompts{{5, 17, 200}, {33}, {7, 8, 9, 10}};
  std::vector<train::Example> hits, misses;
  for (const auto& p : prompts) {
    models::GenerateOptions g;
    g.max_new_tokens = 6;
    const std::vector<int32_t> out = models::generate(*m.base, p, g);  // prompt + 6 greedy tokens
    const std::vector<int32_t> completion(out.begin() + int64_t(p.size()), out.end() - 1);
    // The sixth greedy token stands in for the end token: greedy then reproduces completion + end.
    hits.push_back(train::make_example(p, completion, out.back(), 64));
    misses.push_back(train::make_example(p, completion, (out.back() + 1) % 256, 64));  // another end token
    std::vector<int32_t> changed = completion;
    changed[2] = (changed[2] + 1) % 256;  // a wrong token in the middle
    misses.push_back(train::make_example(p, changed, out.back(), 64));
  }
  auto pointers = [](const std::vector<train::Example>& v) {
    std::vector<const train::Example*> out;
    for (const train::Example& e : v) out.push_back(&e);
    return out;
  };
  train::PairsScore hit = train::score_pairs(m, pointers(hits), 2, 0);
  CHECK(hit.examples == 3);
  CHECK(hit.exact == 3);
  CHECK(hit.tokens == 18);
  train::PairsScore miss = train::score_pairs(m, pointers(misses), 4, 0);
  CHECK(miss.examples == 6);
  CHECK(miss.exact == 0);
  train::Example cut = train::make_example(prompts[0], std::vector<int32_t>(hits[0].ids.begin() + 3, hits[0].ids.end() - 1),
                                           hits[0].ids.back(), 7);  // the end token cut off
  CHECK(train::score_pairs(m, {&cut}, 1, 0).exact == 0);
}

TEST_CASE("the pairs loss is the token-weighted mean over completion tokens, as the training loss") {
  for (const char* adapter : {"", "gpt2_lora", "gpt2_prompt_random", "gpt2_prefix"}) {
    CAPTURE(adapter);
    train::TrainedModel m = fixture_model(adapter);
    std::vector<train::Example> ex;
    ex.push_back(train::make_example(std::vector<int32_t>{5, 17, 200}, std::vector<int32_t>{40, 41}, 255, 64));
    ex.push_back(train::make_example(std::vector<int32_t>{33}, std::vector<int32_t>{50, 51, 52, 53, 54}, 255, 64));
    ex.push_back(train::make_example(std::vector<int32_t>{7, 8, 9, 10, 11, 12}, std::vector<int32_t>{60}, 255, 64));
    const std::vector<const train::Example*> rows{&ex[0], &ex[1], &ex[2]};
    train::PairsScore s = train::score_pairs(m, rows, 2, 0);  // batches of 2 and 1
    CHECK(s.tokens == 3 + 6 + 2);
    // The training loss (fused cross-entropy) over all three in one padded batch.
    const double train_loss = m.loss(train::pad_batch(rows, 0)).item();
    CHECK(s.loss() == doctest::Approx(train_loss).epsilon(1e-5));
  }
}

TEST_CASE("minipeft eval on a pairs file: text and --json; bad lines exit 1") {
  const std::string args = "eval --val-fraction 0.05 --data " + test::data_path("pairs_example.jsonl");
  test::Run r = test::minipeft(args);
  CAPTURE(r.output);
  CHECK(r.code == 0);
  CHECK(r.output.find("exact match 0.00% (0/12)") != std::string::npos);
  r = test::minipeft(args + " --json");
  REQUIRE(r.code == 0);
  nlohmann::json j = nlohmann::json::parse(r.output);
  CHECK(j["examples"] == 12);
  CHECK(j["cut"] == 0);
  CHECK(j["completion_tokens"].get<int64_t>() >= 24);  // " 91" and the end token at least
  CHECK(j["loss"].get<double>() > 0);
  test::TempDir d("pairs_eval");
  test::write_file(d / "bad.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\", \"completion\": 2}\n");
  r = test::minipeft("eval --data " + d / "bad.jsonl");
  CHECK(r.code == 1);
  CHECK(r.output.find("bad.jsonl line 2, key \"completion\": must be a string") != std::string::npos);
}
