// minipeft generate --prompts and eval with several --adapter name=folder:
// one mixed batch whose rows name their adapters.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/minipeft.h"

using mp::test::minipeft;
using mp::test::Run;

TEST_CASE("generate --prompts and eval over two LoRA adapters in one mixed batch") {
  mp::test::TempDir d("mixed_cli");
  const std::string pairs = mp::test::data_path("pairs_example.jsonl");
  for (const char* seed : {"1", "2"}) {  // two small adapters on gpt2-tiny
    Run r = minipeft("train --no-progress --method lora --steps 2 --seq 16 --lr 0.01 --seed " + std::string(seed) +
                     " --data " + pairs + " --out " + d / ("run" + std::string(seed)));
    REQUIRE_MESSAGE(r.code == 0, r.output);
  }
  const std::string adapters = " --adapter a=" + d / "run1/final" + " --adapter b=" + d / "run2/final";
  mp::test::write_file(d / "prompts.jsonl", "{\"prompt\": \"12+7=\", \"adapter\": \"a\"}\n"
                                            "{\"prompt\": \"Permission is granted\", \"adapter\": \"b\"}\n"
                                            "{\"prompt\": \"3+4=\"}\n");
  Run r = minipeft("generate --max-new-tokens 5 --compare-switching --prompts " + d / "prompts.jsonl" + adapters);
  CAPTURE(r.output);
  REQUIRE(r.code == 0);
  CHECK(r.output.find("same tokens: yes") != std::string::npos);
  std::istringstream lines(r.output);
  std::string line;
  std::vector<std::string> rows;
  while (std::getline(lines, line))
    if (!line.empty() && line[0] == '{') rows.push_back(nlohmann::json::parse(line)["adapter"]);
  CHECK(rows == std::vector<std::string>{"a", "b", "__base__"});

  // eval: rows of a pairs file name their adapter.
  mp::test::write_file(d / "pairs.jsonl", "{\"prompt\": \"1+1=\", \"completion\": \" 2\", \"adapter\": \"a\"}\n"
                                          "{\"prompt\": \"2+2=\", \"completion\": \" 4\", \"adapter\": \"b\"}\n"
                                          "{\"prompt\": \"3+3=\", \"completion\": \" 6\"}\n");
  r = minipeft("eval --json --fraction 1 --data " + d / "pairs.jsonl" + adapters);
  REQUIRE_MESSAGE(r.code == 0, r.output);
  CHECK(nlohmann::json::parse(r.output)["examples"] == 3);

  // Bad input: an adapter no --adapter loaded, a name given twice, several adapters without --prompts.
  mp::test::write_file(d / "unknown.jsonl", "{\"prompt\": \"x\", \"adapter\": \"c\"}\n");
  r = minipeft("generate --prompts " + d / "unknown.jsonl" + adapters);
  CHECK(r.code == 1);
  CHECK(r.output.find("row 1: adapter 'c' was not loaded") != std::string::npos);
  r = minipeft("generate --prompts " + d / "prompts.jsonl" + " --adapter a=" + d / "run1/final" + " --adapter a=" +
               d / "run2/final");
  CHECK(r.code == 1);
  CHECK(r.output.find("the name 'a' is given twice") != std::string::npos);
  r = minipeft("generate --prompt hi" + adapters);
  CHECK(r.code == 1);
  CHECK(r.output.find("several --adapter need --prompts") != std::string::npos);
}
