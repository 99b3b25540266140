// The one door for JSON (nn/json_input.h): whatever the text, an mp::Error
// naming the file, the line and column, and the key, or the value.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "engine/error.h"
#include "nn/json_input.h"
#include "tests/support/temp_dir.h"

using namespace mp;
using nn::JsonSource;

TEST_CASE("parse_json: a whole file's errors name its line and column and the key") {
  const JsonSource config{"config.json"};
  CHECK_THROWS_WITH_AS(nn::parse_json("{\n  \"n_layer\": 2,\n  \"n_embd\": 1e999\n}\n", config),
                       "config.json line 3, column 13, key \"n_embd\": the number 1e999 is out of range", Error);
  CHECK_THROWS_WITH_AS(nn::parse_json("{\n  \"n_layer\": 2,\n  \"n_layer\": 3\n}\n", config),
                       "config.json line 3, column 11, key \"n_layer\": appears twice", Error);
  CHECK_THROWS_WITH_AS(nn::parse_json("{\"a\": {\"b\": [1, 2, tru]}}", config),
                       "config.json line 1, column 23, key \"a.b[2]\": not valid JSON: invalid literal", Error);
  CHECK_THROWS_WITH_AS(nn::parse_json("{\"a\": 1}\n\n x", config),
                       "config.json line 3, column 2: not valid JSON: invalid literal; expected end of input", Error);
  CHECK_THROWS_WITH_AS(nn::parse_json("", config),
                       doctest::Contains("config.json line 1, column 1: not valid JSON: unexpected end of input"), Error);
  CHECK_THROWS_WITH_AS(nn::parse_json(std::string(100, '['), config, 8),
                       doctest::Contains("config.json line 1, column 9, element [0][0][0][0][0][0][0][0]: nested "
                                         "more than 8 deep"),
                       Error);
  // A key with a newline in it still makes a one-line message.
  CHECK_THROWS_WITH_AS(nn::parse_json("{\"a\\nb\": 1, \"a\\nb\": 2}", config),
                       "config.json line 1, column 18, key \"a\\u000ab\": appears twice", Error);
  const nlohmann::json ok = nn::parse_json(" {\"a\": [1, {\"b\": null}], \"c\": \"\\u0000\"} \n", config);
  CHECK(ok["a"][1].contains("b"));
  CHECK(ok["c"].get<std::string>() == std::string(1, '\0'));  // an escaped NUL is fine
}

TEST_CASE("json_value: a missing key, another type, out of range") {
  const JsonSource s{"m.jsonl", 4};
  const nlohmann::json j = nn::parse_json(R"({"s": "x", "i": -3, "f": 2.5, "big": 1e10, "u": 18446744073709551615})", s);
  CHECK(nn::json_value<std::string>(j, "s", s) == "x");
  CHECK(nn::json_value<int64_t>(j, "i", s) == -3);
  CHECK(nn::json_value<double>(j, "f", s) == 2.5);
  CHECK(nn::json_value<uint64_t>(j, "u", s) == UINT64_MAX);
  CHECK_THROWS_WITH_AS(nn::json_value<std::string>(j, "zz", s), "m.jsonl line 4: missing key \"zz\"", Error);
  CHECK_THROWS_WITH_AS(nn::json_value<std::string>(j, "i", s), "m.jsonl line 4, key \"i\": must be a string, not number",
                       Error);
  CHECK_THROWS_WITH_AS(nn::json_value<int64_t>(j, "f", s), "m.jsonl line 4, key \"f\": must be an integer, not 2.5", Error);
  CHECK_THROWS_WITH_AS(nn::json_value<uint64_t>(j, "i", s), doctest::Contains("key \"i\": -3 is out of range"), Error);
  CHECK_THROWS_WITH_AS(nn::json_value<int64_t>(j, "u", s), doctest::Contains("key \"u\": 18446744073709551615 is out of range"),
                       Error);
  CHECK_THROWS_WITH_AS(nn::json_value<bool>(nlohmann::json::array(), "b", s), "m.jsonl line 4: expected a JSON object, got array",
                       Error);
  // Lookups that are not json_value: any nlohmann exception becomes an mp::Error naming the source.
  CHECK_THROWS_WITH_AS(nn::read_json(s, [&] { return j.at("s").get<int>(); }),
                       "m.jsonl line 4: type must be number, but is string", Error);
}

TEST_CASE("read_json_file: a directory, a missing file") {
  test::TempDir d("json_input");
  std::filesystem::create_directories(d / "config.json");
  CHECK_THROWS_WITH_AS(nn::read_json_file(d / "config.json", "model config"),
                       (d / "config.json: the model config is a directory, not a file").c_str(), Error);
  CHECK_THROWS_WITH_AS(nn::read_json_file(d / "none.json", "model config"),
                       (d / "none.json: cannot open the model config").c_str(), Error);
}
