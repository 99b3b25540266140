// Pairs files as a careless or hostile user writes them (issue 22): a NUL
// byte, a number beyond a double, a duplicate key, a bad string, a line over
// the limit, a directory; data with nothing to learn, a split that leaves
// nothing to train on. Each is an mp::Error naming the file, one line and the key.
#include <doctest/doctest.h>

#include <array>
#include <filesystem>
#include <streambuf>
#include <string>

#include "engine/error.h"
#include "tests/support/minipeft.h"
#include "train/data/line_reader.h"
#include "train/data/pairs.h"
#include "train/data/paths.h"
#include "train/data/training_data.h"

using namespace mp;

// Issue 22: what a careless or hostile file holds, each an error naming the
// file, the line (one line) and the key.
TEST_CASE("pairs lines: a NUL byte, a number out of range, a duplicate key, a bad string") {
  test::TempDir d("pairs_hostile");
  const std::string good = "{\"prompt\": \"a\", \"completion\": \"b\"}\n";
  auto expect = [&](const std::string& second_line, const std::string& what) {
    CAPTURE(second_line);
    const std::string path = d / "bad.jsonl";
    test::write_file(path, good + second_line + "\n" + good);  // the bad line is line 2
    const std::string message = path + " line 2, " + what;
    CHECK_THROWS_WITH_AS(train::read_pairs_file(path), doctest::Contains(message.c_str()), Error);
  };
  using namespace std::string_literals;
  // The parser takes a NUL for the end of the text: the rest of the line was silently dropped.
  expect("{\"prompt\": \"a\0b\", \"completion\": \"c\"}"s, "column 14, key \"prompt\": a raw NUL byte");
  expect("{\"prompt\": \"a\", \"completion\": \"b\"}\0{\"text\": \"hidden\"}"s, "column 35: a raw NUL byte");
  // A number beyond a double aborted the program (nlohmann's out_of_range escaped the reader).
  expect("{\"prompt\": 1e999, \"completion\": \"x\"}", "column 12, key \"prompt\": the number 1e999 is out of range");
  expect("{\"prompt\": \"a\", \"completion\": -2e400}", "column 31, key \"completion\": the number -2e400 is out of range");
  // The parser keeps the last of two equal keys: which one the user meant is unknown.
  expect("{\"prompt\": \"a\", \"completion\": \"b\", \"prompt\": \"c\"}", "column 43, key \"prompt\": appears twice");
  // An object with a bad string is not "not a JSON object".
  expect("{\"prompt\": \"\\ud800\", \"completion\": \"b\"}",
         "column 19, key \"prompt\": not valid JSON: invalid string: surrogate U+D800..U+DBFF must be followed by");
  expect("{\"prompt\": \"a\", \"completion\": \"b\x01\"}",
         "column 33, key \"completion\": not valid JSON: invalid string: control character U+0001");
}

TEST_CASE("a pairs file: a line over 1 MiB is refused as soon as the limit is passed; a directory is named so") {
  test::TempDir d("pairs_long");
  const std::string good = "{\"prompt\": \"a\", \"completion\": \"b\"}\n";
  test::write_file(d / "long.jsonl", good + "{\"prompt\": \"" + std::string(1 << 20, 'x') + "\", \"completion\": \"b\"}\n");
  CHECK_THROWS_WITH_AS(train::read_pairs_file(d / "long.jsonl"),
                       doctest::Contains((d / "long.jsonl line 2: longer than 1 MiB, the limit for one line").c_str()),
                       Error);
  // A line of exactly the limit is read.
  const std::string fill(train::LineReader::kMaxLineBytes - good.size() + 1, ' ');
  test::write_file(d / "limit.jsonl", good.substr(0, good.size() - 1) + fill + "\n" + good);
  CHECK(train::read_pairs_file(d / "limit.jsonl").size() == 2);

  // An endless line of NULs (a gigabyte of them, say) is refused after 1 MiB, not read whole.
  struct Nuls : std::streambuf {
    int64_t given = 0;
    std::array<char, 4096> zeros{};
    int_type underflow() override {
      if (given > (int64_t(1) << 30)) return traits_type::eof();
      given += int64_t(zeros.size());
      setg(zeros.data(), zeros.data(), zeros.data() + zeros.size());
      return 0;
    }
  } nuls;
  std::istream in(&nuls);
  CHECK_THROWS_WITH_AS(train::read_pairs(in, "nuls.jsonl"), "nuls.jsonl line 1: longer than 1 MiB, the limit for one line",
                       Error);
  CHECK(nuls.given < 2 << 20);

  std::filesystem::create_directories(d / "dir.jsonl");
  CHECK_THROWS_WITH_AS(train::read_pairs_file(d / "dir.jsonl"),
                       (d / "dir.jsonl is a directory, not a pairs file").c_str(), Error);
}

TEST_CASE("nothing to learn: no example with a scored token is an error that says why") {
  const int32_t end = 50256;
  const std::vector<int32_t> none, long_prompt(20, 7), word{5};
  CHECK(train::make_example(none, none, end, 8).scored_tokens() == 0);         // only the end token
  CHECK(train::make_example(word, none, end, 8).scored_tokens() == 1);         // the end token after the prompt
  CHECK(train::make_example(none, word, end, 8).scored_tokens() == 1);         // the end token after the text
  CHECK(train::make_example(long_prompt, word, end, 8).scored_tokens() == 0);  // the completion cut away
  CHECK(train::make_example(word, word, end, 8).scored_tokens() == 2);

  std::vector<train::Example> part{train::make_example(long_prompt, word, end, 8), train::make_example(none, none, end, 8),
                                   train::make_example(long_prompt, none, end, 8)};
  CHECK_THROWS_WITH_AS(train::require_scored_tokens(part, "x.jsonl", "training part"),
                       "x.jsonl: nothing to learn: no example of the training part has a token to score (of its 3 "
                       "examples, 2 have a prompt that fills all --seq 8 tokens, so their completion is cut away; 1 is "
                       "empty)",
                       Error);
  CHECK_THROWS_WITH_AS(train::require_scored_tokens(std::span(part).first(1), "x.jsonl", "held-out part"),
                       doctest::Contains("(of its 1 example, 1 has a prompt that fills all --seq 8 tokens, so its "
                                         "completion is cut away)"),
                       Error);
  part.push_back(train::make_example(word, none, end, 8));
  train::require_scored_tokens(part, "x.jsonl", "training part");  // one scored token is enough
}

TEST_CASE("training data: nothing to learn, or a held-out split that leaves nothing to train on") {
  test::TempDir d("pairs_nothing");
  const models::Tokenizer tok = models::Tokenizer::from_dir(train::default_tokenizer_dir());
  test::write_file(d / "empty.jsonl", "{\"prompt\": \"\", \"completion\": \"\"}\n{\"text\": \"\"}\n");
  CHECK_THROWS_WITH_AS(train::load_training_data(d / "empty.jsonl", 0, 16, false, tok),
                       doctest::Contains("empty.jsonl: nothing to learn: no example of the training part has a token "
                                         "to score (of its 2 examples, 2 are empty)"),
                       Error);
  std::string words;
  for (int i = 0; i < 40; ++i) words += " word";
  test::write_file(d / "long.jsonl", "{\"prompt\": \"" + words + "\", \"completion\": \" yes\"}\n");
  CHECK_THROWS_WITH_AS(train::load_training_data(d / "long.jsonl", 0, 16, true, tok),
                       doctest::Contains("long.jsonl: nothing to learn: no example of the training part has a token "
                                         "to score (of its 1 example, 1 has a prompt that fills all --seq 16 tokens"),
                       Error);
  test::write_file(d / "one.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n");
  CHECK_THROWS_WITH_AS(train::load_training_data(d / "one.jsonl", 0.1, 16, false, tok),
                       doctest::Contains("one.jsonl: --val-fraction 0.1 holds out the last 1 of its 1 example, which "
                                         "leaves none to train on"),
                       Error);
  CHECK(train::load_training_data(d / "one.jsonl", 0, 16, false, tok) != nullptr);

  // The held-out part, when the trainer evaluates on it: its loss would be 0/0.
  test::write_file(d / "held.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"" + words +
                                         "\", \"completion\": \" yes\"}\n");
  const auto held = train::load_training_data(d / "held.jsonl", 0.5, 16, false, tok);
  CHECK_THROWS_WITH_AS(held->val_batches(1, 16, 1),
                       doctest::Contains("held.jsonl: nothing to learn: no example of the held-out part has a token "
                                         "to score (of its 1 example, 1 has a prompt that fills all --seq 16 tokens"),
                       Error);
}
