// The minipeft program on bad input: a one-line error, exit 1 (2 for bad
// usage), and no crash. Runs the built binary (MP_MINIPEFT).
#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

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
}

TEST_CASE("eval, generate, merge, info on bad input") {
  mp::test::TempDir d("cli_errors2");
  expect_error("eval --model " + d / "nowhere", "nowhere");
  expect_error("generate --max-new-tokens 0", "--max-new-tokens must be positive");
  expect_error("generate --model gpt2-tiny --prompt x --max-new-tokens 10000", "positions");
  expect_error("merge --model gpt2-tiny --adapter " + d / "nothing" + " --out " + d / "m", "nothing");
  expect_error("info --model gpt2-tiny --method lora --lora-r 0", "r");
}
