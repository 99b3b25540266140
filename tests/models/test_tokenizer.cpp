// Tests for the GPT-2 BPE tokenizer: ids identical to HF's GPT2TokenizerFast
// (tests/fixtures/tokenizer_cases.json), round trips, invalid UTF-8 and bad
// files. MP_FIXTURES and MP_DATA point at tests/fixtures and data/.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "engine/error.h"
#include "models/tokenizer.h"
#include "tests/support/env.h"
#include "tests/support/temp_dir.h"

namespace fs = std::filesystem;
using mp::models::Tokenizer;

namespace {

using mp::test::env_dir;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Loading takes a fraction of a second; share one tokenizer across tests.
const Tokenizer& gpt2() {
  static const Tokenizer tokenizer = Tokenizer::from_dir(env_dir("MP_DATA") + "/gpt2-tokenizer");
  return tokenizer;
}

using mp::test::TempDir;

// Runs f, which must throw mp::Error, and returns the message.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const mp::Error& e) {
    return e.what();
  }
  FAIL("expected mp::Error");
  return {};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("tokenizer: ids match HF's GPT2TokenizerFast on the fixture cases") {
  const auto cases = nlohmann::json::parse(read_text(env_dir("MP_FIXTURES") + "/tokenizer_cases.json"));
  REQUIRE(cases.is_array());
  REQUIRE(cases.size() >= 10);
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const std::vector<int32_t> expected = c.at("ids").get<std::vector<int32_t>>();
    CAPTURE(text);
    const std::vector<int32_t> ids = gpt2().encode(text);
    CHECK(ids == expected);
    CHECK(gpt2().decode(ids) == text);
  }
}

TEST_CASE("tokenizer: vocabulary facts") {
  const Tokenizer& tok = gpt2();
  CHECK(tok.vocab_size() == 50257);
  CHECK(tok.eos_id() == 50256);
  CHECK(tok.token_str(50256) == "<|endoftext|>");
  CHECK(tok.token_str(220) == "\xC4\xA0");          // "Ġ": a space
  CHECK(tok.token_str(198) == "\xC4\x8A");          // "Ċ": a newline
  CHECK(tok.token_str(262) == "\xC4\xA0the");       // "Ġthe"
  CHECK(tok.encode("Hello world") == std::vector<int32_t>{15496, 995});
  CHECK(tok.encode("") == std::vector<int32_t>{});
  CHECK(tok.encode("a<|endoftext|>b") == std::vector<int32_t>{64, 50256, 65});
  CHECK(tok.decode(std::vector<int32_t>{50256}) == "<|endoftext|>");
}

TEST_CASE("tokenizer: OPT convention prepends </s> = 2") {
  const std::vector<int32_t> plain = gpt2().encode("Hello world");
  const std::vector<int32_t> opt = gpt2().encode_with_bos("Hello world");
  REQUIRE(opt.size() == plain.size() + 1);
  CHECK(opt[0] == 2);
  CHECK(std::equal(plain.begin(), plain.end(), opt.begin() + 1));
  CHECK(gpt2().encode_with_bos("", 7) == std::vector<int32_t>{7});
}

TEST_CASE("tokenizer: decode rejects ids outside the vocabulary") {
  const std::string message = error_of([] { gpt2().decode(std::vector<int32_t>{15496, 50257}); });
  CHECK(contains(message, "50257"));
  CHECK(contains(message, "position 1"));
  CHECK_THROWS_AS(gpt2().decode(std::vector<int32_t>{-1}), mp::Error);
  CHECK_THROWS_AS(gpt2().token_str(50257), mp::Error);
}

TEST_CASE("tokenizer: round trip on the corpora and pathological inputs") {
  const std::string data = env_dir("MP_DATA");
  for (const char* file : {"/tinyshakespeare/input.txt", "/legal/licenses.txt"}) {
    const std::string text = read_text(data + file);
    const std::vector<int32_t> ids = gpt2().encode(text);
    CAPTURE(file);
    CHECK(ids.size() > text.size() / 8);
    CHECK(gpt2().decode(ids) == text);
  }
  // One huge piece each: BPE must stay O(n log n) and PCRE2's JIT must not
  // run out of stack on long runs.
  for (const std::string& text : {std::string(1 << 20, ' '), std::string(1 << 20, 'a'), std::string(1 << 20, '7'),
                                  std::string(1 << 20, '!'), std::string(1 << 19, '\n') + "x"}) {
    CHECK(gpt2().decode(gpt2().encode(text)) == text);
  }
  // Every byte value that is valid UTF-8 on its own, and some multi-byte characters.
  std::string all;
  for (int b = 0; b < 128; ++b) all += static_cast<char>(b);
  all += "\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF";
  CHECK(gpt2().decode(gpt2().encode(all)) == all);
}

TEST_CASE("tokenizer: invalid UTF-8 throws mp::Error naming the byte offset") {
  struct Case {
    const char* what;
    std::string text;
    size_t offset;
  };
  const std::vector<Case> cases = {
      {"lone continuation byte", "ab\x80", 2},
      {"continuation byte first", "\xBF", 0},
      {"truncated 2-byte sequence", "abc\xC3", 3},
      {"truncated 3-byte sequence", "x\xE2\x82", 1},
      {"truncated 4-byte sequence", "\xF0\x9F\x98", 0},
      {"lead byte then ASCII", "\xE2(x", 0},
      {"overlong 2-byte (C0)", "A\xC0\xAF", 1},
      {"overlong 2-byte (C1)", "\xC1\xBF", 0},
      {"overlong 3-byte", "ok \xE0\x80\xAF", 3},
      {"overlong 4-byte", "\xF0\x80\x80\xAF", 0},
      {"0xFF", "hello \xFF world", 6},
      {"0xFE", "\xFE", 0},
      {"surrogate encoded (D800)", "\xED\xA0\x80", 0},
      {"surrogate encoded (DFFF)", "ab\xED\xBF\xBF", 2},
      {"above U+10FFFF", "\xF4\x90\x80\x80", 0},
      {"F5 lead byte", "\xF5\x80\x80\x80", 0},
      {"bad byte after valid text", "caf\xC3\xA9 \x80", 6},
      {"bad byte after <|endoftext|>", "<|endoftext|>\xC3", 13},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    const std::string message = error_of([&] { gpt2().encode(c.text); });
    CHECK(contains(message, "invalid UTF-8"));
    CHECK(contains(message, "byte offset " + std::to_string(c.offset)));
  }
  // Valid edge cases are accepted.
  CHECK_NOTHROW(gpt2().encode(std::string("\0a", 2)));
  CHECK_NOTHROW(gpt2().encode("\xED\x9F\xBF\xEE\x80\x80"));  // U+D7FF, U+E000
  CHECK_NOTHROW(gpt2().encode("\xF4\x8F\xBF\xBF"));          // U+10FFFF
}

TEST_CASE("tokenizer: from_hf_dir reads HF's vocab.json + merges.txt") {
  const std::string source = env_dir("MP_DATA") + "/gpt2-tokenizer";
  TempDir dir("hf");
  fs::copy_file(source + "/encoder.json", dir.path / "vocab.json");
  fs::copy_file(source + "/vocab.bpe", dir.path / "merges.txt");
  const Tokenizer tok = Tokenizer::from_hf_dir(dir.path.string());
  const std::string text = "The quick brown fox jumps over the lazy dog. It's 2024!";
  CHECK(tok.encode(text) == gpt2().encode(text));
  CHECK(tok.vocab_size() == 50257);

  // from_files with explicit paths gives the same tokenizer.
  const Tokenizer same = Tokenizer::from_files(source + "/encoder.json", source + "/vocab.bpe");
  CHECK(same.encode(text) == tok.encode(text));
}

TEST_CASE("tokenizer: a vocabulary laid out like OPT's (</s> = 2, no <|endoftext|>)") {
  // The 256 one-byte tokens of GPT-2's vocabulary, renumbered after OPT's four
  // specials, plus one merged token "Ġt" (" t").
  const auto gpt2_vocab = nlohmann::json::parse(read_text(env_dir("MP_DATA") + "/gpt2-tokenizer/encoder.json"));
  nlohmann::json vocab = {{"<s>", 0}, {"<pad>", 1}, {"</s>", 2}, {"<unk>", 3}};
  for (const auto& [spelling, id] : gpt2_vocab.items())
    if (id.get<int>() < 256) vocab[spelling] = id.get<int>() + 4;
  vocab["\xC4\xA0t"] = 260;
  TempDir dir("opt");
  write_text(dir.path / "vocab.json", vocab.dump());
  write_text(dir.path / "merges.txt", "#version: 0.2\n\xC4\xA0 t\n");

  const Tokenizer tok = Tokenizer::from_hf_dir(dir.path.string());
  CHECK(tok.vocab_size() == 261);
  CHECK(tok.eos_id() == 2);
  const int32_t a = 4 + 'a' - '!';  // 'a' is byte token 64 in GPT-2's order
  CHECK(tok.encode(" ta</s>") == std::vector<int32_t>{260, a, 2});
  CHECK(tok.encode_with_bos(" t") == std::vector<int32_t>{2, 260});
  CHECK(tok.decode(std::vector<int32_t>{260, 2}) == " t</s>");
}

TEST_CASE("tokenizer: missing or malformed files throw mp::Error naming the file") {
  const std::string source = env_dir("MP_DATA") + "/gpt2-tokenizer";
  TempDir dir("bad");
  const std::string missing = (dir.path / "no_such_encoder.json").string();

  std::string message = error_of([&] { Tokenizer::from_files(missing, source + "/vocab.bpe"); });
  CHECK(contains(message, missing));
  message = error_of([&] { Tokenizer::from_files(source + "/encoder.json", missing); });
  CHECK(contains(message, missing));
  message = error_of([&] { Tokenizer::from_dir(dir.path.string()); });
  CHECK(contains(message, dir.path.string()));
  message = error_of([&] { Tokenizer::from_files(dir.path.string(), source + "/vocab.bpe"); });
  CHECK(contains(message, dir.path.string()));

  const std::string bad_json = (dir.path / "bad.json").string();
  write_text(bad_json, "{\"a\": 0,");
  message = error_of([&] { Tokenizer::from_files(bad_json, source + "/vocab.bpe"); });
  CHECK(contains(message, bad_json));

  const std::string no_bytes = (dir.path / "no_bytes.json").string();
  write_text(no_bytes, R"({"a": 0, "<|endoftext|>": 1})");
  message = error_of([&] { Tokenizer::from_files(no_bytes, source + "/vocab.bpe"); });
  CHECK(contains(message, no_bytes));
  CHECK(contains(message, "byte"));

  const std::string bad_id = (dir.path / "bad_id.json").string();
  write_text(bad_id, R"({"a": 0, "b": 5})");
  message = error_of([&] { Tokenizer::from_files(bad_id, source + "/vocab.bpe"); });
  CHECK(contains(message, bad_id));

  // A merges file whose third line is bad: the message names path:line.
  const std::string bad_merges = (dir.path / "merges.txt").string();
  for (const char* line : {"\xC4\xA0t\n", "onlyone\n", "a b c\n", "zzzzzzzzzz q\n"}) {
    write_text(bad_merges, std::string("#version: 0.2\n\xC4\xA0 t\n") + line);
    CAPTURE(line);
    message = error_of([&] { Tokenizer::from_files(source + "/encoder.json", bad_merges); });
    CHECK(contains(message, bad_merges + ":3"));
  }
  write_text(bad_merges, "#version: 0.2\n");
  message = error_of([&] { Tokenizer::from_files(source + "/encoder.json", bad_merges); });
  CHECK(contains(message, bad_merges));
}

TEST_CASE("tokenizer: copies share the tables; encode runs on several threads at once") {
  const Tokenizer copy = gpt2();
  CHECK(copy.encode("To be, or not to be") == gpt2().encode("To be, or not to be"));

  const std::string text = read_text(env_dir("MP_DATA") + "/legal/licenses.txt");
  const std::vector<int32_t> expected = gpt2().encode(text);
  std::vector<std::vector<int32_t>> results(4);
  {
    std::vector<std::jthread> threads;
    for (auto& result : results) threads.emplace_back([&] { result = copy.encode(text); });
  }
  for (const auto& result : results) CHECK(result == expected);
}
