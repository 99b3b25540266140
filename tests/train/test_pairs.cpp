// Pairs files (train/data/pairs.h): parsing and its errors, examples and padded
// batches, the token-weighted loss over completions, and the trainer on them.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/variable.h"
#include "engine/error.h"
#include "models/load.h"
#include "nn/adamw.h"
#include "tests/support/minipeft.h"
#include "train/data/pairs.h"
#include "train/data/paths.h"
#include "train/train_step.h"
#include "train/trainer.h"

using namespace mp;

namespace {

const models::Tokenizer& tokenizer() {
  static models::Tokenizer tok = models::Tokenizer::from_dir(train::default_tokenizer_dir());
  return tok;
}

std::vector<int32_t> values(const Tensor& t) {
  Tensor c = t.contiguous();
  return {c.data<int32_t>(), c.data<int32_t>() + c.numel()};
}

}  // namespace

TEST_CASE("a bad line of a pairs file is an error naming the file and the line") {
  test::TempDir d("pairs_bad");
  const std::string good = "{\"prompt\": \"a\", \"completion\": \"b\"}\n";
  auto expect = [&](const std::string& second_line, const std::string& what) {
    CAPTURE(second_line);
    const std::string path = d / "bad.jsonl";
    test::write_file(path, good + "\n" + second_line + "\n" + good);  // the bad line is line 3
    const std::string message = path + " line 3" + what;
    CHECK_THROWS_WITH_AS(train::read_pairs_file(path), doctest::Contains(message.c_str()), Error);
    try {
      train::read_pairs_file(path);
    } catch (const Error& e) {  // the line is named once: not also the parser's "line 1" of the text it was given
      const std::string m = e.what();
      CHECK(m.find(" line ") == m.rfind(" line "));
    }
  };
  expect("{\"prompt\": \"a\", \"completion\": ", ", column 30, key \"completion\": not valid JSON");
  expect("not json", ", column 2: not valid JSON: invalid literal");
  expect("[\"prompt\", \"completion\"]", ": expected a JSON object, got array");
  expect("{\"prompt\": \"a\"}", ": missing key \"completion\"");
  expect("{\"completion\": \"a\"}", ": missing key \"prompt\"");
  expect("{\"prompt\": 3, \"completion\": \"b\"}", ", key \"prompt\": must be a string, not number");
  expect("{\"prompt\": \"a\", \"completion\": null}", ", key \"completion\": must be a string, not null");
  expect("{\"text\": [\"a\"]}", ", key \"text\": must be a string, not array");
  expect("{\"text\": \"a\", \"prompt\": \"b\", \"completion\": \"c\"}", ": has both \"text\" and \"prompt\"");
  expect("{\"prompt\": \"a\", \"completion\": \"b\", \"answer\": \"c\"}", ": unexpected key \"answer\"");
  expect("{\"prompt\": \"a\", \"completion\": \"b\", \"adapter\": \"x\"}", ": unexpected key \"adapter\"");
  expect("{\"prompt\": \"a\xff\xfe\", \"completion\": \"b\"}", ", column 14, key \"prompt\": not valid UTF-8");

  test::write_file(d / "empty.jsonl", "\n  \n");
  CHECK_THROWS_WITH_AS(train::read_pairs_file(d / "empty.jsonl"), doctest::Contains("has no examples"), Error);
  CHECK_THROWS_WITH_AS(train::read_pairs_file(d / "missing.jsonl"), doctest::Contains("missing.jsonl"), Error);
}

TEST_CASE("pairs lines: prompt and completion, text, adapter; blank lines skipped") {
  test::TempDir d("pairs_read");
  test::write_file(d / "p.jsonl",
                   "{\"prompt\": \"Q\", \"completion\": \" A\", \"adapter\": \"math\"}\r\n\n{\"text\": \"plain\"}\n");
  std::vector<train::PairLine> lines = train::read_pairs_file(d / "p.jsonl", /*allow_adapter=*/true);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].prompt == "Q");
  CHECK(lines[0].completion == " A");
  CHECK(lines[0].adapter == "math");
  CHECK(lines[0].line == 1);
  CHECK(lines[1].prompt.empty());
  CHECK(lines[1].completion == "plain");
  CHECK(lines[1].line == 3);
  CHECK(train::is_pairs_file("x/train.jsonl"));
  CHECK_FALSE(train::is_pairs_file("x/train.txt"));
}

TEST_CASE("an example is prompt + completion + end, each tokenized alone, cut to the length") {
  // Tokenized separately: " world" after "hello" is not re-merged across the seam.
  std::vector<train::PairLine> lines{{"hello", " world", "", 1}, {"", "plain text", "", 2}};
  train::Examples ex = train::tokenize_pairs(lines, tokenizer(), 64, "f.jsonl");
  const int32_t eos = tokenizer().eos_id();
  std::vector<int32_t> want = tokenizer().encode("hello");
  const int64_t prompt = int64_t(want.size());
  for (int32_t id : tokenizer().encode(" world")) want.push_back(id);
  want.push_back(eos);
  CHECK(ex.examples[0].ids == want);
  CHECK(ex.examples[0].prompt_tokens == prompt);
  CHECK(ex.examples[1].prompt_tokens == 0);
  CHECK(ex.examples[1].ids.back() == eos);
  CHECK(ex.truncated == 0);

  const std::vector<int32_t> p{1, 2, 3}, c{4, 5};
  train::Example e = train::make_example(p, c, 9, 6);
  CHECK(e.ids == std::vector<int32_t>{1, 2, 3, 4, 5, 9});
  CHECK_FALSE(e.cut);
  e = train::make_example(p, c, 9, 4);
  CHECK(e.ids == std::vector<int32_t>{1, 2, 3, 4});
  CHECK(e.completion_tokens() == 1);
  CHECK(e.cut);
  e = train::make_example(p, c, 9, 2);  // the prompt alone is too long: nothing left to learn
  CHECK(e.prompt_tokens == 2);
  CHECK(e.completion_tokens() == 0);
  CHECK(train::tokenize_pairs(lines, tokenizer(), 2, "f.jsonl").truncated == 2);
}

TEST_CASE("a padded batch: right padding, mask 0 and labels -100 on the prompt and the padding") {
  const std::vector<int32_t> p1{1, 2}, c1{3}, p2{4}, c2{5, 6, 7};
  train::Example a = train::make_example(p1, c1, 9, 64), b = train::make_example(p2, c2, 9, 64);
  const train::Example* rows[] = {&a, &b};
  train::Batch batch = train::pad_batch(rows, 0);
  CHECK(batch.ids.shape() == Shape{2, 5});
  CHECK(values(batch.ids) == std::vector<int32_t>{1, 2, 3, 9, 0, /**/ 4, 5, 6, 7, 9});
  CHECK(values(batch.labels) == std::vector<int32_t>{-100, -100, 3, 9, -100, /**/ -100, 5, 6, 7, 9});
  CHECK(values(batch.attention_mask) == std::vector<int32_t>{1, 1, 1, 1, 0, /**/ 1, 1, 1, 1, 1});
}

TEST_CASE("held out: the last lines; training batches drawn from the rest, the same for the same step") {
  train::Examples ex;
  for (int i = 0; i < 10; ++i) ex.examples.push_back(train::make_example(std::vector<int32_t>{i}, std::vector<int32_t>{i}, 99, 64));
  train::PairsDataset data(ex, 0.2, 0, "f.jsonl");
  CHECK(data.train_examples() == 8);
  CHECK(data.val_examples() == 2);
  std::vector<train::Batch> val = data.val_batches(4, 8);
  REQUIRE(val.size() == 1);
  CHECK(values(val[0].ids) == std::vector<int32_t>{8, 8, 99, 9, 9, 99});
  for (int step = 0; step < 20; ++step)
    for (int32_t id : values(data.train_batch(3, 7, step).ids)) CHECK(((id < 8) || id == 99));
  CHECK(values(data.train_batch(3, 7, 5).ids) == values(data.train_batch(3, 7, 5).ids));
  CHECK_THROWS_WITH_AS(train::PairsDataset(ex, 0.0, 0, "f.jsonl").val_batches(4, 8),
                       doctest::Contains("held-out part has no examples"), Error);
}

TEST_CASE("the loss of a padded batch is the token-weighted mean over the completions") {
  // Independent of padding: each example alone, unpadded, gives its own mean;
  // the batch's loss is sum(count_i * mean_i) / sum(count_i).
  train::TrainedModel m;
  m.base = models::load_pretrained(test::fixtures_dir() + "/gpt2_tiny");
  m.module().eval();
  const std::vector<std::vector<int32_t>> prompts{{5, 17, 200}, {33}, {7, 8, 9, 10, 11, 12}};
  const std::vector<std::vector<int32_t>> completions{{40, 41}, {50, 51, 52, 53, 54}, {60}};
  std::vector<train::Example> ex;
  for (size_t i = 0; i < 3; ++i) ex.push_back(train::make_example(prompts[i], completions[i], 255, 64));
  double nll = 0, count = 0, mean_of_means = 0;
  for (const train::Example& e : ex) {
    const train::Example* one[] = {&e};
    train::Batch alone = train::pad_batch(one, 0);
    const double mean = m.loss(train::Batch(alone.ids, alone.labels, Tensor())).item();
    nll += mean * double(e.completion_tokens());
    mean_of_means += mean / 3;
    count += double(e.completion_tokens());
  }
  const train::Example* rows[] = {&ex[0], &ex[1], &ex[2]};
  const double batch_loss = m.loss(train::pad_batch(rows, 0)).item();
  CHECK(batch_loss == doctest::Approx(nll / count).epsilon(1e-6));
  // Not the mean of the examples' means (the rows have 3, 6 and 2 targets).
  CHECK(std::abs(batch_loss - mean_of_means) > 1e-3);
}

TEST_CASE("grad accumulation over pairs: micro-batches weighted by their targets give the whole batch's step") {
  // Rows with 2, 3, 6 and 8 targets (completion + end): halves of 5 and 14.
  // The whole batch's loss is the mean over 19 targets; the halves' means
  // weighted 5 * 2 / 19 and 14 * 2 / 19 (each over grad_accum = 2) add up to
  // the same loss and gradient. Learning rate 0: the model stays as it is.
  train::TrainedModel m;
  m.base = models::load_pretrained(test::fixtures_dir() + "/gpt2_tiny");
  m.module().eval();
  const std::vector<std::vector<int32_t>> prompts{{7, 8, 9, 10}, {5, 17, 200}, {33}, {1, 2}};
  const std::vector<std::vector<int32_t>> completions{{60}, {40, 41}, {50, 51, 52, 53, 54}, {3, 4, 5, 6, 7, 8, 9}};
  std::vector<train::Example> ex;
  for (size_t i = 0; i < 4; ++i) ex.push_back(train::make_example(prompts[i], completions[i], 255, 64));
  const train::Example* rows[] = {&ex[0], &ex[1], &ex[2], &ex[3]};
  const train::Batch whole = train::pad_batch(rows, 0);
  REQUIRE(whole.targets() == 19);
  const std::vector<train::Batch> halves{whole.rows({0, 2}), whole.rows({2, 2})};
  CHECK(halves[0].targets() == 5);
  CHECK(halves[1].targets() == 14);

  std::unique_ptr<parallel::Communicator> one = parallel::single_process();
  const std::vector<double> w = train::micro_batch_weights(halves, *one);
  REQUIRE(w.size() == 2);
  CHECK(w[0] == doctest::Approx(10.0 / 19));
  CHECK(w[1] == doctest::Approx(28.0 / 19));
  CHECK(train::micro_batch_weights({whole.ids}, *one).empty());  // text windows: all equal

  std::vector<nn::NamedParameter> params = train::trainable_parameters(m.module());
  nn::AdamW opt(params, {.lr = 0});
  const train::StepOutcome all = train::train_step(m, opt, {whole}, {.clip = 0});
  const train::StepOutcome weighted = train::train_step(m, opt, halves, {.clip = 0, .weights = w});
  const train::StepOutcome unweighted = train::train_step(m, opt, halves, {.clip = 0});
  REQUIRE(weighted.losses.size() == 2);  // each half's own mean, and the step's loss their weighted mean
  CHECK(weighted.loss == doctest::Approx((w[0] * weighted.losses[0] + w[1] * weighted.losses[1]) / 2));
  CHECK(weighted.loss == doctest::Approx(all.loss).epsilon(1e-6));
  CHECK(weighted.grad_norm == doctest::Approx(all.grad_norm).epsilon(1e-5));
  // The mean of the halves' means is another loss, with another gradient.
  CHECK(std::abs(unweighted.loss - all.loss) > 1e-3);
  CHECK(std::abs(unweighted.grad_norm - all.grad_norm) > 1e-3 * all.grad_norm);
}

TEST_CASE("train on a pairs file, padded or packed: runs, resumes bit for bit, reports cut examples") {
  for (bool packing : {false, true}) {
    CAPTURE(packing);
    test::TempDir a("pairs_a"), b("pairs_b");
    auto config = [&](const std::string& out) {
      train::TrainConfig c;
      c.model = "gpt2-tiny";
      c.method = "lora";
      c.data = test::data_path("pairs_example.jsonl");
      c.packing = packing;
      c.batch = packing ? 2 : 4;
      c.seq = packing ? 32 : 16;
      c.steps = 4;
      c.lora_dropout = 0.1f;
      c.out_dir = out;
      c.progress = false;
      return c;
    };
    train::TrainResult whole = train::train(config(a.str()), tokenizer());
    REQUIRE(whole.steps.size() == 4);
    CHECK(std::isfinite(whole.final_val_loss));
    train::TrainConfig first = config(b.str());
    first.stop_after = 2;
    train::train(first, tokenizer());
    train::TrainConfig second = config(b.str());
    second.resume = true;
    train::TrainResult rest = train::train(second, tokenizer());
    REQUIRE(rest.steps.size() == 2);
    CHECK(rest.steps[1].loss == whole.steps[3].loss);
    CHECK(rest.final_val_loss == whole.final_val_loss);
    if (!packing) continue;
    train::TrainConfig text = config(b.str());
    text.data = test::data_path("legal/licenses.txt");
    CHECK_THROWS_WITH_AS(train::train(text, tokenizer()), doctest::Contains("--packing packs the examples of a pairs file"),
                         Error);
    train::TrainConfig prompt = config(b.str());
    prompt.method = "prompt";
    CHECK_THROWS_WITH_AS(train::train(prompt, tokenizer()), doctest::Contains("--packing works with --method full, lora or ia3: a soft prompt or prefix per row would cross the examples"),
                         Error);
  }

  test::TempDir a("pairs_cli");
  test::Run r = test::minipeft("train --no-progress --steps 1 --batch 2 --seq 5 --data " +
                               test::data_path("pairs_example.jsonl"));
  CAPTURE(r.output);
  CHECK(r.code == 0);
  CHECK(r.output.find("examples in") != std::string::npos);
  CHECK(r.output.find("longer than --seq 5 tokens and were cut") != std::string::npos);
  test::write_file(a / "bad.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": 1}\n");
  r = test::minipeft("train --no-progress --steps 1 --data " + a / "bad.jsonl");
  CHECK(r.code == 1);
  CHECK(r.output.find("bad.jsonl line 2") != std::string::npos);
}
