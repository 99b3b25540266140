// The GPT-2 byte-level BPE tokenizer: text (UTF-8) <-> token ids.
//
// Encoding runs in three stages:
//
//   1. Pre-tokenize. The GPT-2 regex cuts the text into "words": contractions
//      ('s 't 're 've 'm 'll 'd), letter runs, digit runs and punctuation
//      runs, each with at most one leading space, and whitespace runs. BPE
//      never merges across these pieces.
//   2. Map bytes. Each piece is a byte string; BPE starts from one token per
//      byte. (The vocabulary files spell bytes with printable stand-in
//      characters, e.g. "Ġ" for a space; we translate once at load time and
//      work on raw bytes from then on.)
//   3. Merge. Repeatedly merge the adjacent pair of tokens whose merge was
//      learnt earliest (lowest rank in the merges file) until no learnt merge
//      applies. The tokens left are the piece's ids.
//
// The ids match HF's GPT2TokenizerFast and tiktoken's "gpt2" encoding
// (checked on every Unicode code point in several contexts).
//
// Special tokens: the literal text "<|endoftext|>" (the eos_id() token) in
// the input encodes to the single id eos_id(), as in HF's GPT2TokenizerFast
// (and tiktoken's encode with allowed_special="all").
//
// Thread safety: a Tokenizer is immutable after loading, and copies share
// its tables; encode and decode are const and may run on many threads at
// once (the cache of already encoded words lives inside each encode call).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mp::models {

class Tokenizer {
 public:
  // Loads OpenAI's files: encoder.json (token -> id) and vocab.bpe (merges).
  // Throws mp::Error naming the file (and the line, for a bad merges line)
  // when a file is missing, unreadable or malformed.
  static Tokenizer from_files(const std::string& encoder_json, const std::string& vocab_bpe);

  // Loads a directory holding either HF's names (vocab.json + merges.txt)
  // or OpenAI's (encoder.json + vocab.bpe); HF's names are tried first.
  static Tokenizer from_dir(const std::string& dir);
  // The two files from_dir would load from `dir` ({vocabulary, merges}), or
  // nullopt when it holds neither pair's vocabulary file.
  static std::optional<std::array<std::string, 2>> files_in(const std::string& dir);
  // The same as from_dir; named for HF model directories.
  static Tokenizer from_hf_dir(const std::string& dir) { return from_dir(dir); }

  // Encodes UTF-8 text. Throws mp::Error "invalid UTF-8 at byte offset N"
  // when the input is not valid UTF-8 (overlong forms, surrogates, code
  // points above U+10FFFF, stray or missing continuation bytes); N is where
  // the first invalid sequence starts.
  std::vector<int32_t> encode(std::string_view utf8) const;

  // OPT's convention: the same BPE, with </s> (id 2) prepended to every
  // sequence. Returns {bos_id} followed by encode(utf8).
  std::vector<int32_t> encode_with_bos(std::string_view utf8, int32_t bos_id = 2) const;

  // Concatenates the bytes of the tokens. The result is exactly the encoded
  // text for ids from encode(); an arbitrary id sequence may cut a multi-byte
  // character and give bytes that are not valid UTF-8 (they are returned as
  // they are, not replaced). Throws mp::Error for an id outside the vocabulary.
  std::string decode(std::span<const int32_t> ids) const;

  int vocab_size() const;
  // The id of "<|endoftext|>" (50256 for GPT-2); for a vocabulary without
  // it, such as OPT's, the id of "</s>".
  int32_t eos_id() const;
  // The token as spelt in the vocabulary file (a space shows as "Ġ"), as HF's
  // convert_ids_to_tokens gives it. Throws mp::Error for an unknown id.
  std::string token_str(int32_t id) const;

 private:
  struct Impl;  // the vocabulary, the merges and the compiled regex
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  // Immutable once loaded, so copies of a Tokenizer share it.
  std::shared_ptr<const Impl> impl_;
};

}  // namespace mp::models
