// JSON from a user's file, through one door. Every reader in the project
// (model and adapter configs, safetensors headers, tokenizer vocabularies,
// pairs and prompts files, checkpoint metadata, training logs) parses with
// parse_json() and looks values up with json_value() or inside read_json(),
// so that no input, however broken, leaves as anything but an mp::Error whose
// one line names the file, the line (and column) and the key:
//
//   x.jsonl line 3, column 22, key "prompt": the number 1e999 is out of range
//   config.json line 4, column 9, key "n_embd": appears twice
//   x.jsonl line 2, key "completion": must be a string, not number
//
// parse_json refuses what nlohmann's parser would let through or throw on: a
// raw NUL byte (the parser takes it for the end of the text and ignores the
// rest), a duplicate key (the parser keeps the last), a number beyond a
// double, nesting deeper than a limit.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "engine/error.h"

namespace mp::nn {

// Where JSON text comes from: a file (or a name for it in messages: "x.safetensors
// header"), and the line of the file the text is, for files of one JSON value
// per line (JSONL); line 0 when the text is the whole file.
struct JsonSource {
  std::string file;
  int64_t line = 0;
  // "x.jsonl line 3", with `key`: "x.jsonl line 3, key \"prompt\"".
  std::string at(std::string_view key = {}) const;
};

// No file this project reads nests deeper; the limit keeps a hostile input
// from recursing through dump() and the destructors.
inline constexpr int kMaxJsonDepth = 64;

// The one JSON value `text` holds, or an mp::Error naming source, the line and
// column, and the key being read, in the user's terms.
nlohmann::json parse_json(std::string_view text, const JsonSource& source, int max_depth = kMaxJsonDepth);

// parse_json of the whole file at `path`; `what` names it in the error for a
// file that is missing, unreadable or a directory ("model config").
nlohmann::json read_json_file(const std::string& path, std::string_view what);

// The value of `key` in `object` as T (std::string, bool, int64_t, uint64_t,
// double), or an mp::Error: "x.jsonl line 2: missing key \"prompt\"", or
// "..., key \"step\": must be an integer, not string" (an integer must be
// integral and in T's range).
template <class T>
T json_value(const nlohmann::json& object, std::string_view key, const JsonSource& source);
// The same for a value already found (an array's element): `key` names it ("rng[2]").
template <class T>
T json_as(const nlohmann::json& value, std::string_view key, const JsonSource& source);

// An nlohmann exception from a lookup as the message of an mp::Error naming source.
std::string json_lookup_error(const JsonSource& source, const nlohmann::json::exception& e);

// read() with any nlohmann exception it throws (a missing key, a value of
// another type) turned into an mp::Error naming source: for readers whose
// lookups are not all json_value.
template <class Read>
decltype(auto) read_json(const JsonSource& source, Read&& read) {
  try {
    return read();
  } catch (const nlohmann::json::exception& e) {
    throw Error(json_lookup_error(source, e));
  }
}

// `s` fit for a one-line message: control characters escaped, at most 60 bytes.
std::string printable(std::string_view s);

}  // namespace mp::nn
