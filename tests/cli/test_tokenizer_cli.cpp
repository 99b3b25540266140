// train/eval/generate --tokenizer (cli/tokenizer_option.h): a random built-in
// model takes the tokenizer's vocabulary size, full fine-tuning saves the
// tokenizer beside the model, and a model folder's own tokenizer is the default.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/minipeft.h"

using mp::test::minipeft;
using mp::test::Run;

namespace {

// A 259-token vocabulary: GPT-2's 256 byte tokens (its ids 0..255), " 1" and " 2"
// by merges, and <|endoftext|>.
void write_small_tokenizer(const std::string& dir) {
  std::filesystem::create_directories(dir);
  nlohmann::json gpt2 = nlohmann::json::parse(std::ifstream(mp::test::data_path("gpt2-tokenizer/encoder.json")));
  nlohmann::json vocab = nlohmann::json::object();
  for (const auto& [token, id] : gpt2.items())
    if (id.get<int>() < 256) vocab[token] = id;
  vocab["\xc4\xa0" "1"] = 256;  // "Ġ1": a space then 1
  vocab["\xc4\xa0" "2"] = 257;
  vocab["<|endoftext|>"] = 258;
  mp::test::write_file(dir + "/vocab.json", vocab.dump());
  mp::test::write_file(dir + "/merges.txt", "#version: 0.2\n\xc4\xa0 1\n\xc4\xa0 2\n");
}

}  // namespace

TEST_CASE("train --tokenizer: a small vocabulary, saved with the model and used by eval and generate") {
  mp::test::TempDir d("tokenizer_cli");
  write_small_tokenizer(d / "tok");
  const std::string pairs = mp::test::data_path("pairs_example.jsonl");
  Run r = minipeft("train --no-progress --steps 2 --batch 2 --seq 16 --tokenizer " + d / "tok" + " --data " + pairs +
                   " --out " + d / "full");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  const nlohmann::json config = nlohmann::json::parse(std::ifstream(d / "full/final/config.json"));
  CHECK(config["vocab_size"] == 259);  // the tokenizer's, not GPT-2's 50,257
  CHECK(std::filesystem::is_regular_file(d / "full/final/vocab.json"));
  CHECK(std::filesystem::is_regular_file(d / "full/final/merges.txt"));

  // The folder's own tokenizer is the default: eval and an adapter trained on it need no --tokenizer.
  r = minipeft("eval --json --val-fraction 1 --data " + pairs + " --model " + d / "full/final");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  r = minipeft("train --no-progress --method lora --steps 1 --batch 2 --seq 16 --data " + pairs + " --model " +
               d / "full/final" + " --out " + d / "lora");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  CHECK_FALSE(std::filesystem::exists(d / "lora/final/vocab.json"));  // an adapter uses its base's
  r = minipeft("generate --max-new-tokens 2 --prompt 12 --model " + d / "full/final" + " --adapter " + d / "lora/final");
  REQUIRE_MESSAGE(r.code == 0, r.output);

  // GPT-2's 50,257 tokens do not fit this model's 259 embeddings.
  r = minipeft("eval --json --val-fraction 1 --data " + pairs + " --model " + d / "full/final" + " --tokenizer " +
               mp::test::data_path("gpt2-tokenizer"));
  CHECK(r.code == 1);
  CHECK(r.output.find("has 50257 tokens, more than the model's vocabulary of 259") != std::string::npos);
  // Without --tokenizer, a random built-in model keeps GPT-2's vocabulary and saves no tokenizer.
  r = minipeft("train --no-progress --steps 1 --batch 2 --seq 16 --data " + pairs + " --out " + d / "gpt2");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  CHECK(nlohmann::json::parse(std::ifstream(d / "gpt2/final/config.json"))["vocab_size"] == 50257);
  CHECK_FALSE(std::filesystem::exists(d / "gpt2/final/vocab.json"));
}

TEST_CASE("--tokenizer on bad input: the error names the folder or file, exit 1") {
  mp::test::TempDir d("tokenizer_cli_errors");
  const std::string pairs = mp::test::data_path("pairs_example.jsonl");
  const std::string train = "train --no-progress --steps 1 --batch 2 --seq 16 --data " + pairs + " --tokenizer ";
  std::filesystem::create_directories(d / "empty");
  Run r = minipeft(train + d / "empty");
  CHECK(r.code == 1);
  CHECK(r.output.find(d / "empty" + ": no tokenizer files") != std::string::npos);
  write_small_tokenizer(d / "bad");
  mp::test::write_file(d / "bad/merges.txt", "#version: 0.2\n\xc4\xa0 7\n");  // " 7" is not in the vocabulary
  r = minipeft("eval --json --val-fraction 1 --data " + pairs + " --tokenizer " + d / "bad");
  CHECK(r.code == 1);
  CHECK(r.output.find("merges.txt:2") != std::string::npos);
  mp::test::write_file(d / "bad/vocab.json", "[1, 2]");
  r = minipeft("generate --prompt 1 --tokenizer " + d / "bad");
  CHECK(r.code == 1);
  CHECK(r.output.find(d / "bad/vocab.json") != std::string::npos);
}
