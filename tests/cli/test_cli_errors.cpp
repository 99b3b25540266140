// The minipeft program on bad input: a one-line error, exit 1 (2 for bad
// usage), and no crash. Runs the built binary (MP_MINIPEFT).
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "nn/safetensors.h"
#include "tests/support/env.h"
#include "tests/support/minipeft.h"

using mp::test::minipeft;
using mp::test::Run;

namespace {

void expect_error(const std::string& args, const std::string& message, int code = 1) {
  CAPTURE(args);
  Run r = minipeft(args);
  CAPTURE(r.output);
  CHECK(r.code == code);
  CHECK(r.output.find(message) != std::string::npos);
}

}  // namespace

TEST_CASE("bad input to minipeft train: clear errors, exit 1") {
  mp::test::TempDir d("cli_errors");
  mp::test::write_file(d / "empty.txt", "");
  mp::test::write_file(d / "bad.txt", std::string("valid text, then a bad byte: \xff\xfe here") + std::string(200, 'x'));
  mp::test::write_file(d / "file", "not a folder");
  const std::string train = "train --no-progress --steps 1 --batch 1 --seq 8 ";
  expect_error(train + "--data " + d / "missing.txt", "missing.txt");
  expect_error(train + "--data " + d / "empty.txt", "empty");
  expect_error(train + "--data " + d / "bad.txt", "UTF-8");
  expect_error(train + "--method sideways", "unknown method 'sideways'");
  expect_error(train + "--model gpt7", "gpt7");
  expect_error("train --no-progress --steps 1 --batch -3", "--batch must be positive");
  expect_error("train --no-progress --steps 1 --batch 100000 --seq 100000", "absurdly large");
  expect_error(train + "--out " + d / "file/sub", "file/sub");
  expect_error(train + "--lora-r 0 --method lora", "r");
  expect_error(train + "--base-dtype bf16", "keeps the base frozen");  // full fine-tuning of a bf16 base
  expect_error(train + "--base-dtype nf4", "--base-dtype nf4 keeps the base frozen");
  expect_error(train + "--method prefix --use-dora", "--use-dora is a LoRA option");
  expect_error(train + "--method prefix --modules-to-save ln_f", "--modules-to-save trains modules beside an adapter");
  expect_error("info --method lora --modules-to-save ln_z", "modules_to_save 'ln_z' matches no module");
  expect_error("info --method lora --base-dtype bf16 --modules-to-save lm_head", "stored in bf16");  // frozen storage
  expect_error(train + "--width 100 --heads 3", "--width 100 is not divisible by --heads 3");
}

TEST_CASE("bad usage exits 2; --help exits 0") {
  expect_error("train --no-such-flag", "no-such-flag", 2);
  expect_error("train --base-dtype f16", "f16", 2);
  expect_error("train --precision f64", "f64", 2);
  expect_error("", "subcommand", 2);
  CHECK(minipeft("train --help").code == 0);
}

// The subcommands the top-level --help lists (the lines under "Subcommands:").
std::vector<std::string> subcommands() {
  std::istringstream help(minipeft("--help").output);
  std::vector<std::string> names;
  bool listed = false;
  for (std::string line; std::getline(help, line);) {
    if (listed && line.rfind("  ", 0) == 0) names.push_back(line.substr(2, line.find(' ', 2) - 2));
    else listed = line == "Subcommands:";
  }
  return names;
}

TEST_CASE("every --help is plain text: no control bytes but newlines") {
  const std::vector<std::string> names = subcommands();
  CHECK(names.size() >= 8);
  for (const std::string& command : names) {
    CAPTURE(command);
    Run r = minipeft(command + " --help");
    CHECK(r.code == 0);
    auto control = [](char c) { return (static_cast<unsigned char>(c) < 0x20 && c != '\n') || c == 0x7f; };
    const auto bad = std::find_if(r.output.begin(), r.output.end(), control);
    CHECK_MESSAGE(bad == r.output.end(), "control byte in: " << r.output.substr(size_t(bad - r.output.begin()), 40));
  }
}

TEST_CASE("tokenize round trip and errors") {
  Run r = minipeft("tokenize --text \"Hello world\"");
  CHECK(r.code == 0);
  CHECK(r.output == "[15496,995]\n");  // GPT-2's ids for "Hello" and " world"
  expect_error("tokenize --decode --text \"[15496, \\\"x\\\"]\"", "not a token id");
  expect_error("tokenize --text \"$(printf '\\303')\"", "UTF-8");
  expect_error("tokenize --decode --text \"[1, 1e999]\"", "--decode input line 1, column 5, element [1]: the number 1e999 is out of range");
  expect_error("tokenize --decode --text \"[4294967296]\"", "--decode: 4294967296 is not a token id");
}

TEST_CASE("eval, generate, merge, info on bad input") {
  mp::test::TempDir d("cli_errors2");
  expect_error("eval --model " + d / "nowhere", "nowhere");
  expect_error("generate --max-new-tokens 0", "--max-new-tokens must be positive");
  expect_error("generate --model gpt2-tiny --prompt x --max-new-tokens 10000", "positions");
  expect_error("merge --model gpt2-tiny --adapter " + d / "nothing" + " --out " + d / "m", "nothing");
  expect_error("info --model gpt2-tiny --method lora --lora-r 0", "r");
}

// merge --combine (PEFT's add_weighted_adapter): bad input names the flag or
// adapter; a good one writes PEFT's combined adapter (linear: A and B equal
// the fixture's, tests/fixtures/peft/combine_gpt2_tiny/).
TEST_CASE("merge --combine: errors, and the adapter PEFT makes") {
  mp::test::TempDir d("cli_combine");
  const std::string fx = mp::test::fixtures_dir(), dir = fx + "/peft/combine_gpt2_tiny";
  const std::string merge = "merge --model " + fx + "/gpt2_tiny --out " + d / "out" + " --adapter a=" + dir + "/a ";
  expect_error(merge + "--adapter b=" + dir + "/b --weights 1,1 --combine ties", "unknown combination type 'ties'");
  expect_error(merge + "--adapter b=" + dir + "/b --weights 1 --combine cat", "--weights: 1 weights for 2 --adapter");
  expect_error(merge + "--adapter c=" + dir + "/c --weights 1,1 --combine linear", "'c' has r 2");
  expect_error(merge + "--adapter c=" + dir + "/c --weights 1,1 --combine svd --svd-rank 9", "svd_rank 9");
  expect_error(merge + "--adapter b=" + dir + "/b", "several need --combine");
  expect_error(merge + "--weights 1", "--weights and --svd-rank need --combine");
  expect_error(merge + "--adapter p=" + fx + "/peft/gpt2_prompt_random --weights 1,1 --combine cat", "LoRA");
  expect_error("merge --model " + fx + "/opt_tiny --out " + d / "o" + " --adapter a=" + dir + "/a --weights 1 --combine cat",
               "c_attn");  // a GPT-2 adapter on OPT: its targets are not there

  Run r = minipeft(merge + "--adapter b=" + dir + "/b --weights 0.7,-0.3 --combine linear");
  CAPTURE(r.output);
  REQUIRE(r.code == 0);
  auto ours = mp::nn::SafetensorsFile::open(d / "out/adapter_model.safetensors");
  auto ref = mp::nn::SafetensorsFile::open(dir + "/reference.safetensors");
  CHECK(ours.names().size() == 16);  // A and B of c_attn, attn.c_proj, c_fc, mlp.c_proj in 2 layers
  for (const std::string& key : ours.names()) {
    CAPTURE(key);
    REQUIRE(ref.contains("linear." + key));
    CHECK(mp::ops::max_abs_diff(ours.load(key), ref.load("linear." + key)) < 1e-6);
  }
}

// Issue 22: a careless or hostile pairs or prompts file. Each gives exit 1
// (never a signal: a number beyond a double used to abort with exit 134) and
// one "error:" line that names the file, the line and the key.
namespace {

void expect_one_error_line(const std::string& args, const std::string& message) {
  CAPTURE(args);
  Run r = minipeft(args);
  CAPTURE(r.output);
  CHECK(r.code == 1);
  std::istringstream lines(r.output);
  int errors = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("error: ", 0) != 0) continue;
    ++errors;
    CHECK(line.find(message) != std::string::npos);
  }
  CHECK(errors == 1);
}

}  // namespace

TEST_CASE("bad pairs and prompts files: exit 1, one line naming the file, the line and the key") {
  mp::test::TempDir d("cli_bad_pairs");
  auto file = [&](const std::string& name, const std::string& text) {
    mp::test::write_file(d / name, text);
    return d / name;
  };
  const std::string eval = "eval --model gpt2-tiny --fraction 1 --data ";
  const std::string train = "train --no-progress --steps 1 --batch 1 --seq 16 --val-fraction 0 --data ";
  const std::string fixtures = mp::test::fixtures_dir();
  const std::string generate =
      "generate --model " + fixtures + "/gpt2_tiny --adapter " + fixtures + "/peft/gpt2_lora --prompts ";

  const std::string huge = file("huge.jsonl", "{\"prompt\": 1e999, \"completion\": \"x\"}\n");
  const std::string out_of_range = "huge.jsonl line 1, column 12, key \"prompt\": the number 1e999 is out of range";
  expect_one_error_line(eval + huge, out_of_range);
  expect_one_error_line(train + huge, out_of_range);
  expect_one_error_line(generate + file("huge_prompts.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"adapter\": -1e999}\n"),
                        "huge_prompts.jsonl line 2, column 28, key \"adapter\": the number -1e999 is out of range");

  using namespace std::string_literals;
  expect_one_error_line(eval + file("nul.jsonl", "{\"prompt\": \"a\0b\", \"completion\": \"c\"}\n"s),
                        "nul.jsonl line 1, column 14, key \"prompt\": a raw NUL byte");
  expect_one_error_line(generate + file("nul_prompts.jsonl", "{\"prompt\": \"a\"}\0{\"prompt\": \"b\"}\n"s),
                        "nul_prompts.jsonl line 1, column 16: a raw NUL byte");
  expect_one_error_line(train + file("twice.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\", \"completion\": \"c\"}\n"),
                        "twice.jsonl line 1, column 47, key \"completion\": appears twice");
  expect_one_error_line(generate + file("type.jsonl", "{\"prompt\": \"a\"}\n\n{\"prompt\": [\"a\"]}\n"),
                        "type.jsonl line 3, key \"prompt\": must be a string, not array");
  expect_one_error_line(eval + file("surrogate.jsonl", "{\"prompt\": \"a\", \"completion\": \"\\udc00\"}\n"),
                        "surrogate.jsonl line 1, column 37, key \"completion\": not valid JSON: invalid string");
  expect_one_error_line(eval + file("long.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n" + std::string(3 << 20, 'x')),
                        "long.jsonl line 2: longer than 1 MiB, the limit for one line");
  std::filesystem::create_directories(d / "dir.jsonl");
  expect_one_error_line(eval + d / "dir.jsonl", "dir.jsonl is a directory, not a pairs file");
  expect_one_error_line(train + d / "dir.jsonl", "dir.jsonl is a directory, not a pairs file");
}

TEST_CASE("nothing to learn, or nothing left to train on: exit 1 saying why") {
  mp::test::TempDir d("cli_nothing");
  const std::string empty = d / "empty.jsonl", cut = d / "cut.jsonl", one = d / "one.jsonl";
  mp::test::write_file(empty, "{\"prompt\": \"\", \"completion\": \"\"}\n{\"text\": \"\"}\n");
  std::string words;
  for (int i = 0; i < 40; ++i) words += " word";
  mp::test::write_file(cut, "{\"prompt\": \"" + words + "\", \"completion\": \" yes\"}\n");
  mp::test::write_file(one, "{\"prompt\": \"a\", \"completion\": \"b\"}\n");
  const std::string train = "train --no-progress --steps 1 --batch 1 --seq 16 --data ";
  expect_one_error_line(train + empty + " --val-fraction 0",
                        "empty.jsonl: nothing to learn: no example of the training part has a token to score (of its 2 "
                        "examples, 2 are empty)");
  expect_one_error_line(train + cut + " --val-fraction 0",
                        "cut.jsonl: nothing to learn: no example of the training part has a token to score (of its 1 "
                        "example, 1 has a prompt that fills all --seq 16 tokens, so its completion is cut away)");
  expect_one_error_line("eval --model gpt2-tiny --fraction 1 --seq 16 --data " + cut,
                        "cut.jsonl: nothing to learn: no example of the held-out part (--fraction 1) has a token to score");
  expect_one_error_line("eval --model gpt2-tiny --fraction 1 --data " + empty,
                        "empty.jsonl: nothing to learn: no example of the held-out part (--fraction 1) has a token");
  expect_one_error_line(train + one + " --val-fraction 0.1",
                        "one.jsonl: --val-fraction 0.1 holds out the last 1 of its 1 example, which leaves none to train on");
}
