// The GPT-2 byte-level BPE tokenizer; see tokenizer.h for the three stages.
#include "models/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <bit>
#include <cassert>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "engine/error.h"
#include "nn/json_input.h"

namespace mp::models {
namespace {

// ---------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------

// Length of the valid UTF-8 sequence that starts at s[i], or 0 if none does.
// The rules are RFC 3629's table: the first byte fixes the length, and the
// second byte's range excludes overlong forms (E0, F0), surrogates (ED) and
// code points above U+10FFFF (F4).
size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  size_t length = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    if (b0 == 0xE0) lo = 0xA0;  // below: overlong
    if (b0 == 0xED) hi = 0x9F;  // above: UTF-16 surrogates D800..DFFF
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    if (b0 == 0xF0) lo = 0x90;  // below: overlong
    if (b0 == 0xF4) hi = 0x8F;  // above: beyond U+10FFFF
  } else {
    return 0;  // a continuation byte, C0/C1 (always overlong) or F5..FF
  }
  if (i + length > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < length; ++k)
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  return length;
}

// Throws unless `text` is valid UTF-8, naming where the first bad sequence starts.
void check_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const size_t length = utf8_sequence_length(text, i);
    if (length == 0) fail("invalid UTF-8 at byte offset {}", i);
    i += length;
  }
}

// The code point of the valid `length`-byte sequence at s[i].
char32_t decode_utf8(std::string_view s, size_t i, size_t length) {
  static constexpr unsigned char lead_bits[] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  char32_t c = static_cast<unsigned char>(s[i]) & lead_bits[length];
  for (size_t k = 1; k < length; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return c;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    // The byte alphabet below stays under U+0800; no longer forms needed.
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// ---------------------------------------------------------------------------
// The byte alphabet
// ---------------------------------------------------------------------------

// GPT-2's vocabulary files are text, so they cannot hold raw bytes such as a
// space or 0x00. OpenAI's bytes_to_unicode() gives every byte a printable
// stand-in character: the 188 printable Latin-1 bytes ('!'..'~', '¡'..'¬',
// '®'..'ÿ') stand for themselves, and the other 68 bytes, in order, get
// U+0100, U+0101, ... So a space (0x20, the 33rd unprintable byte) is
// U+0120 'Ġ' and a newline (0x0A) is U+010A 'Ċ'.
std::array<char32_t, 256> byte_to_char() {
  std::array<char32_t, 256> table{};
  const auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) table[b] = printable(b) ? static_cast<char32_t>(b) : next++;
  return table;
}

// The inverse: a vocabulary spelling -> the raw bytes it stands for, or
// nothing if it is not valid UTF-8 or uses a character outside the alphabet.
std::optional<std::string> chars_to_bytes(std::string_view spelling) {
  static const auto char_to_byte = [] {
    std::array<int, 0x100 + 68> inverse;  // the stand-ins end at U+0143
    inverse.fill(-1);
    const auto table = byte_to_char();
    for (int b = 0; b < 256; ++b) inverse[table[b]] = b;
    return inverse;
  }();
  std::string bytes;
  for (size_t i = 0; i < spelling.size();) {
    const size_t length = utf8_sequence_length(spelling, i);
    if (length == 0) return std::nullopt;
    const char32_t c = decode_utf8(spelling, i, length);
    if (c >= char_to_byte.size() || char_to_byte[c] < 0) return std::nullopt;
    bytes += static_cast<char>(char_to_byte[c]);
    i += length;
  }
  return bytes;
}

// ---------------------------------------------------------------------------
// The pre-tokenizer regex (PCRE2)
// ---------------------------------------------------------------------------

// GPT-2's pattern is
//
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// Alternatives are tried left to right at each position: contractions; an
// optional space then letters, digits or other symbols; whitespace not
// followed by a non-space (so that in "a   b" the last space is left to join
// "b" as " b"); any other whitespace (trailing).
//
// We spell \s as \p{White_Space} (and \S as \P{White_Space}): PCRE2's \s
// also matches U+180E, which Unicode stopped calling a space in version 6.3,
// while HF tokenizers and tiktoken follow the White_Space property.
constexpr std::string_view kPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+)"
    R"(|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+)";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};
using MatchData = std::unique_ptr<pcre2_match_data, MatchDataDeleter>;

// The compiled pattern. It is read-only once built, so threads share it; each
// encode call brings its own match data (PCRE2's per-match scratch space).
class PieceRegex {
 public:
  // UTF: work in code points. UCP: \p{...} use Unicode properties. ANCHORED:
  // a match must start where we ask; every character matches some
  // alternative, so the pieces tile the text with no gaps.
  PieceRegex() {
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern.data()), kPattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &error, &offset, nullptr);
    if (code_ == nullptr) fail("tokenizer: cannot compile the GPT-2 regex: {}", pcre2_message(error));
    // Compile to machine code where PCRE2 supports it (several times faster
    // than its interpreter, which we fall back to otherwise).
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~PieceRegex() { pcre2_code_free(code_); }
  PieceRegex(const PieceRegex&) = delete;
  PieceRegex& operator=(const PieceRegex&) = delete;

  MatchData make_match_data() const {
    MatchData match(pcre2_match_data_create_from_pattern(code_, nullptr));
    if (!match) fail("tokenizer: out of memory for PCRE2 match data");
    return match;
  }

  // The end of the piece that starts at `start` in `text`, which must be
  // valid UTF-8: NO_UTF_CHECK skips PCRE2's own check, which would otherwise
  // rescan the rest of the text at every piece.
  size_t piece_end(std::string_view text, size_t start, pcre2_match_data* match) const {
    const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    const int rc = jit_ ? pcre2_jit_match(code_, subject, text.size(), start, PCRE2_NO_UTF_CHECK, match, nullptr)
                        : pcre2_match(code_, subject, text.size(), start, PCRE2_NO_UTF_CHECK, match, nullptr);
    if (rc < 0) fail("tokenizer: the GPT-2 regex failed at byte {}: {}", start, pcre2_message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    assert(ovector[0] == start && ovector[1] > start);  // no gaps, no empty pieces
    return ovector[1];
  }

 private:
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in || std::filesystem::is_directory(path)) fail("{}: cannot open tokenizer file", path);
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) fail("{}: cannot read tokenizer file", path);
  return content.str();
}

// ---------------------------------------------------------------------------
// A flat hash map
// ---------------------------------------------------------------------------

// Open addressing with linear probing: keys and values sit in one array, so a
// lookup usually reads one cache line, where std::unordered_map follows two
// pointers to a separately allocated node. Encoding spends most of its time
// in lookups (merge ranks, the word cache), so this is worth its 40 lines.
// Only what the tokenizer needs: insert-if-absent and find, no erase. A slot
// whose key equals `empty` is free, so that key itself cannot be stored.
template <class Key, class Value, class Hash>
class FlatMap {
 public:
  explicit FlatMap(Key empty) : empty_(empty) { rehash(16); }

  const Value* find(const Key& key) const {
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.key == key) return &slot.value;
      if (slot.key == empty_) return nullptr;
    }
  }

  // Stores key -> value unless key is there already. Returns the stored
  // value and whether this call inserted it.
  std::pair<Value*, bool> try_emplace(const Key& key, const Value& value) {
    if (2 * (size_ + 1) > slots_.size()) rehash(2 * slots_.size());  // keep it at most half full
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.key == key) return {&slot.value, false};
      if (slot.key == empty_) {
        slot = {key, value};
        ++size_;
        return {&slot.value, true};
      }
    }
  }

  size_t size() const { return size_; }

 private:
  struct Slot {
    Key key;
    Value value;
  };

  // Fibonacci hashing: multiply by 2^64 / phi and keep the top bits, which
  // spreads even an identity hash (std::hash of an integer) over the table.
  size_t slot_of(const Key& key) const { return (Hash{}(key) * 0x9E3779B97F4A7C15ull) >> shift_; }

  void rehash(size_t capacity) {  // capacity: a power of two
    std::vector<Slot> old = std::exchange(slots_, std::vector<Slot>(capacity, Slot{empty_, Value{}}));
    mask_ = capacity - 1;
    shift_ = 64 - std::countr_zero(capacity);
    size_ = 0;
    for (const Slot& slot : old)
      if (!(slot.key == empty_)) try_emplace(slot.key, slot.value);
  }

  Key empty_;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  int shift_ = 0;
  size_t size_ = 0;
};

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

}  // namespace

// ---------------------------------------------------------------------------
// The loaded tokenizer
// ---------------------------------------------------------------------------

struct Tokenizer::Impl {
  struct Merge {
    int32_t rank;    // the merge's position in the merges file: lower merges first
    int32_t merged;  // the id of the joined token
  };
  // Where the ids of a piece already encoded in this call sit in the output.
  struct Span {
    size_t offset, length;
  };
  // Piece -> its span. No piece is empty, so the empty view marks a free slot.
  using WordCache = FlatMap<std::string_view, Span, std::hash<std::string_view>>;

  std::vector<std::string> token_bytes;  // id -> the raw bytes it stands for
  std::unordered_map<std::string, int32_t> bytes_to_id;
  std::array<int32_t, 256> byte_token{};  // byte -> its one-byte token
  // pair_key(left, right) -> merge; no token id is -1, so neither is this key
  FlatMap<uint64_t, Merge, std::hash<uint64_t>> merges{~uint64_t{0}};
  int32_t eos_id = -1;
  PieceRegex regex;

  void load_vocab(const std::string& path);
  void load_merges(const std::string& path);
  void encode_ordinary(std::string_view text, pcre2_match_data* match, WordCache& cache,
                       std::vector<int32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

  const Merge* find_merge(int32_t left, int32_t right) const { return merges.find(pair_key(left, right)); }
};

// encoder.json / vocab.json: one JSON object, token string -> id, with the
// ids 0..n-1 each used once.
void Tokenizer::Impl::load_vocab(const std::string& path) {
  const nlohmann::json vocab = nn::parse_json(read_file(path), {path});
  if (!vocab.is_object() || vocab.empty()) fail("{}: expected a JSON object of token -> id", path);

  const size_t n = vocab.size();
  token_bytes.assign(n, {});
  std::vector<bool> seen(n, false);
  for (const auto& [token, id_json] : vocab.items()) {
    if (!id_json.is_number_integer()) fail("{}: the id of \"{}\" is not an integer", path, token);
    const int64_t id = id_json.get<int64_t>();
    if (id < 0 || id >= static_cast<int64_t>(n) || seen[id])
      fail("{}: the id {} of \"{}\" is out of range 0..{} or used twice", path, id, token, n - 1);
    seen[id] = true;
    const std::optional<std::string> bytes = chars_to_bytes(token);
    if (!bytes) fail("{}: token \"{}\" has a character outside GPT-2's byte alphabet", path, token);
    token_bytes[id] = *bytes;
    bytes_to_id.emplace(token_bytes[id], static_cast<int32_t>(id));
  }

  for (int b = 0; b < 256; ++b) {
    const auto it = bytes_to_id.find(std::string(1, static_cast<char>(b)));
    if (it == bytes_to_id.end()) fail("{}: no token for the byte 0x{:02x}", path, b);
    byte_token[b] = it->second;
  }
  // GPT-2 ends documents with <|endoftext|>; OPT's vocabulary uses </s>.
  for (const char* name : {"<|endoftext|>", "</s>"}) {
    if (const auto it = bytes_to_id.find(name); it != bytes_to_id.end()) {
      eos_id = it->second;
      break;
    }
  }
  if (eos_id < 0) fail("{}: no end-of-text token (<|endoftext|> or </s>)", path);
}

// vocab.bpe / merges.txt: an optional "#version" line, then one merge per
// line, "left right", in the order they were learnt. That order is the rank.
void Tokenizer::Impl::load_merges(const std::string& path) {
  std::istringstream lines(read_file(path));
  std::string line;
  int line_number = 0;
  int32_t rank = 0;
  while (std::getline(lines, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_number == 1 && line.starts_with("#version"))) continue;

    const size_t space = line.find(' ');
    if (space == 0 || space == std::string::npos || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos)
      fail("{}:{}: expected two tokens separated by one space, got \"{}\"", path, line_number, line);
    int32_t ids[2];
    std::string joined;
    const std::string_view parts[2] = {std::string_view(line).substr(0, space),
                                       std::string_view(line).substr(space + 1)};
    for (int k = 0; k < 2; ++k) {
      const std::optional<std::string> bytes = chars_to_bytes(parts[k]);
      const auto it = bytes ? bytes_to_id.find(*bytes) : bytes_to_id.end();
      if (it == bytes_to_id.end()) fail("{}:{}: \"{}\" is not in the vocabulary", path, line_number, parts[k]);
      ids[k] = it->second;
      joined += *bytes;
    }
    const auto merged = bytes_to_id.find(joined);
    if (merged == bytes_to_id.end())
      fail("{}:{}: the merged token \"{}{}\" is not in the vocabulary", path, line_number, parts[0], parts[1]);
    // A repeated merge keeps its first (lowest) rank.
    merges.try_emplace(pair_key(ids[0], ids[1]), Merge{rank++, merged->second});
  }
  if (merges.size() == 0) fail("{}: no merges found", path);
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

// BPE on one piece. Start with one token per byte; keep the adjacent pairs
// that have a merge in a min-heap ordered by (rank, position); pop the best,
// join the pair, and push the two new pairs it forms with its neighbours.
// The tokens form a doubly linked list over the byte positions, so a merge is
// O(1) and the whole piece O(n log n) -- a long run of letters costs no more
// per byte than a short word. Ties in rank go to the leftmost pair, which is
// what GPT-2's original "merge every occurrence, left to right" does.
void Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;    // -1 once merged into its left neighbour
    int32_t prev;  // index of the previous live symbol, or -1
    int32_t next;  // index of the next live symbol, or -1
  };
  struct Candidate {
    int32_t rank, pos, left_id, right_id, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };

  if (piece.size() > INT32_MAX) fail("tokenizer: a single word of {} bytes is too long", piece.size());
  const int32_t n = static_cast<int32_t>(piece.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i)
    symbols[i] = {byte_token[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto push_pair = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    if (const Merge* m = find_merge(symbols[left].id, symbols[right].id))
      heap.push({m->rank, left, symbols[left].id, symbols[right].id, m->merged});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& left = symbols[c.pos];
    // Stale if either side has changed since the pair was pushed: a symbol's
    // id only ever grows into a longer token, so equal ids mean unchanged.
    if (left.id != c.left_id || left.next < 0 || symbols[left.next].id != c.right_id) continue;
    Symbol& right = symbols[left.next];
    left.id = c.merged;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.pos;
    right.id = -1;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

// Text without special tokens: cut it into pieces with the regex and BPE each
// piece. A piece seen before in this encode() call is copied from its first
// encoding (most words in real text repeat), found through `cache`, whose keys
// are views into the caller's text and which lives only as long as the call.
void Tokenizer::Impl::encode_ordinary(std::string_view text, pcre2_match_data* match, WordCache& cache,
                                      std::vector<int32_t>& out) const {
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = regex.piece_end(text, start, match);
    const std::string_view piece = text.substr(start, end - start);
    start = end;

    if (piece.size() == 1) {  // one byte, one token: not worth a lookup
      out.push_back(byte_token[static_cast<unsigned char>(piece[0])]);
      continue;
    }
    const auto [span_ptr, inserted] = cache.try_emplace(piece, Span{out.size(), 0});
    if (inserted) {
      encode_piece(piece, out);
      span_ptr->length = out.size() - span_ptr->offset;
    } else {
      const Span span = *span_ptr;
      out.resize(out.size() + span.length);
      std::copy_n(out.begin() + span.offset, span.length, out.end() - span.length);
    }
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view utf8) const {
  check_utf8(utf8);
  std::vector<int32_t> out;
  out.reserve(utf8.size() / 4);  // English runs at about four bytes a token

  const MatchData match = impl_->regex.make_match_data();
  Impl::WordCache cache{std::string_view{}};

  // Split out the end-of-text marker, then encode what lies between.
  const std::string& eos = impl_->token_bytes[impl_->eos_id];
  size_t start = 0;
  for (size_t found; (found = utf8.find(eos, start)) != std::string_view::npos; start = found + eos.size()) {
    impl_->encode_ordinary(utf8.substr(start, found - start), match.get(), cache, out);
    out.push_back(impl_->eos_id);
  }
  impl_->encode_ordinary(utf8.substr(start), match.get(), cache, out);
  return out;
}

std::vector<int32_t> Tokenizer::encode_with_bos(std::string_view utf8, int32_t bos_id) const {
  std::vector<int32_t> ids = encode(utf8);
  ids.insert(ids.begin(), bos_id);
  return ids;
}

// ---------------------------------------------------------------------------
// Decoding and lookups
// ---------------------------------------------------------------------------

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size())
      fail("decode: token id {} at position {} is outside the vocabulary (size {})", ids[i], i, vocab_size());
    text += impl_->token_bytes[ids[i]];
  }
  return text;
}

int Tokenizer::vocab_size() const { return static_cast<int>(impl_->token_bytes.size()); }

int32_t Tokenizer::eos_id() const { return impl_->eos_id; }

std::string Tokenizer::token_str(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail("token_str: token id {} is outside the vocabulary (size {})", id, vocab_size());
  static const auto table = byte_to_char();
  std::string spelling;
  for (unsigned char b : impl_->token_bytes[id]) append_utf8(spelling, table[b]);
  return spelling;
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::from_files(const std::string& encoder_json, const std::string& vocab_bpe) {
  auto impl = std::make_shared<Impl>();
  impl->load_vocab(encoder_json);
  impl->load_merges(vocab_bpe);
  return Tokenizer(std::move(impl));
}

std::optional<std::array<std::string, 2>> Tokenizer::files_in(const std::string& dir) {
  const auto exists = [](const std::string& path) { return std::filesystem::is_regular_file(path); };
  if (exists(dir + "/vocab.json")) return std::array<std::string, 2>{dir + "/vocab.json", dir + "/merges.txt"};
  if (exists(dir + "/encoder.json")) return std::array<std::string, 2>{dir + "/encoder.json", dir + "/vocab.bpe"};
  return std::nullopt;
}

Tokenizer Tokenizer::from_dir(const std::string& dir) {
  const std::optional<std::array<std::string, 2>> files = files_in(dir);
  if (!files) fail("{}: no tokenizer files (vocab.json + merges.txt, or encoder.json + vocab.bpe)", dir);
  return from_files((*files)[0], (*files)[1]);
}

}  // namespace mp::models
