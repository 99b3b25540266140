#include "nn/json_input.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <vector>

namespace mp::nn {

using json = nlohmann::json;

std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 60)) {
    if (c < 0x20 || c == 0x7f) out += fmt::format("\\u{:04x}", c);
    else out += char(c);
  }
  if (s.size() > 60) out += "...";
  return out;
}

std::string JsonSource::at(std::string_view key) const {
  std::string s = file;
  if (line > 0) s += fmt::format(" line {}", line);
  if (!key.empty()) s += fmt::format(", key \"{}\"", printable(key));
  return s;
}

namespace {

// A pointer into the text that tells the parser's reads to `consumed`: where
// the parser is when it reports an event or an error.
struct CountingIterator {
  using iterator_category = std::forward_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  const char* p = nullptr;
  const char** consumed = nullptr;

  reference operator*() const { return *p; }
  CountingIterator& operator++() {
    *consumed = ++p;
    return *this;
  }
  CountingIterator operator++(int) {
    CountingIterator old = *this;
    ++*this;
    return old;
  }
  bool operator==(const CountingIterator& o) const { return p == o.p; }
};

// nlohmann's message without its "[json.exception...] parse error at line 1,
// column 2: syntax error while parsing value - " prefix and its "; last read:
// '...'" (raw bytes of the input; the column says where), keeping what it
// expected there.
std::string plain_message(const json::exception& e) {
  std::string_view m = e.what();
  if (size_t b = m.find("] "); b != std::string_view::npos) m.remove_prefix(b + 2);
  if (m.starts_with("parse error")) {
    if (size_t c = m.find(": "); c != std::string_view::npos) m.remove_prefix(c + 2);
  }
  if (m.starts_with("syntax error while parsing")) {
    if (size_t d = m.find(" - "); d != std::string_view::npos) m.remove_prefix(d + 3);
  }
  const size_t t = m.find("; last read");
  if (t == std::string_view::npos) return std::string(m);
  const size_t expected = m.rfind("; expected ");
  return std::string(m.substr(0, t)) + std::string(expected > t && expected != std::string_view::npos ? m.substr(expected) : "");
}

// nlohmann's SAX events built into a json value (as its own DOM parser does),
// refusing a duplicate key and nesting deeper than max_depth, and keeping the
// path to the value being read for the message when the parse stops.
class Builder {
 public:
  explicit Builder(int max_depth) : max_depth_(max_depth) {}

  json root;
  std::string problem;  // why the parse stopped, "" while it goes on
  std::string number;   // the number out of range, when that stopped it

  bool null() { return place(nullptr); }
  bool boolean(bool b) { return place(b); }
  bool number_integer(json::number_integer_t n) { return place(n); }
  bool number_unsigned(json::number_unsigned_t n) { return place(n); }
  bool number_float(json::number_float_t x, const json::string_t&) { return place(x); }
  bool string(json::string_t& s) { return place(std::move(s)); }
  bool binary(json::binary_t& b) { return place(std::move(b)); }
  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(json::string_t& k) {
    Frame& f = frames_.back();
    f.key = k;
    f.pending = true;
    if (f.value->contains(k)) return stop("appears twice");
    f.slot = &(*f.value)[k];
    return true;
  }

  bool parse_error(std::size_t, const std::string& token, const json::exception& e) {
    if (e.id == 406) {
      number = token;
      return stop(fmt::format("the number {} is out of range", printable(token)));
    }
    const std::string m = plain_message(e);
    if (m.find("UTF-8") != std::string::npos) return stop("not valid UTF-8 (" + m + ")");
    return stop("not valid JSON: " + m);
  }

  // "prompt", "rng[2]", "a.b": the key (and index) of the value being read; "" at the top.
  std::string path() const {
    std::string out;
    for (size_t i = 0; i < frames_.size(); ++i) {
      const Frame& f = frames_[i];
      const bool inner = i + 1 < frames_.size();  // a container inside this one is open
      if (f.value->is_array()) {
        out += fmt::format("[{}]", f.value->size() - (inner ? 1 : 0));
      } else if (f.pending || inner) {
        if (!out.empty()) out += '.';
        out += f.key;
      } else {
        break;
      }
    }
    return out;
  }

 private:
  struct Frame {
    json* value;
    std::string key;         // objects: the last key read
    bool pending = false;    // objects: its value is not read yet
    json* slot = nullptr;    // objects: where that value goes
  };
  std::vector<Frame> frames_;
  int max_depth_;

  bool stop(std::string why) {
    problem = std::move(why);
    return false;
  }

  json* put(json v) {
    if (frames_.empty()) {
      root = std::move(v);
      return &root;
    }
    Frame& f = frames_.back();
    if (f.value->is_array()) {
      f.value->push_back(std::move(v));
      return &f.value->back();
    }
    *f.slot = std::move(v);
    return f.slot;
  }
  bool place(json v) {
    put(std::move(v));
    if (!frames_.empty()) frames_.back().pending = false;
    return true;
  }
  bool open(json v) {
    if (int(frames_.size()) >= max_depth_) return stop(fmt::format("nested more than {} deep", max_depth_));
    json* at = put(std::move(v));
    frames_.push_back({at});
    return true;
  }
  bool close() {
    frames_.pop_back();
    if (!frames_.empty()) frames_.back().pending = false;
    return true;
  }
};

// Parse [begin, end): true, or false with the builder's problem and path set
// and `consumed` where the parser stopped.
bool run_parser(const char* begin, const char* end, Builder& b, const char*& consumed) {
  consumed = begin;
  CountingIterator first{begin, &consumed}, last{end, &consumed};
  const bool ok = json::sax_parse(first, last, &b);
  if (!ok && b.problem.empty()) b.problem = "not valid JSON";
  return ok;
}

// "x.jsonl line 3, column 7, key \"prompt\"" (or "element [2]" in a top-level
// array): the line and column of text[offset].
std::string where(const JsonSource& source, std::string_view text, size_t offset, const std::string& path) {
  offset = std::min(offset, text.size() == 0 ? 0 : text.size() - 1);
  const std::string_view before = text.substr(0, offset);
  const size_t newline = before.rfind('\n');
  const int64_t line = std::max<int64_t>(source.line, 1) + std::count(before.begin(), before.end(), '\n');
  const size_t column = offset - (newline == std::string_view::npos ? 0 : newline + 1) + 1;
  std::string s = fmt::format("{} line {}, column {}", source.file, line, column);
  if (path.starts_with('[')) s += fmt::format(", element {}", printable(path));  // in a top-level array
  else if (!path.empty()) s += fmt::format(", key \"{}\"", printable(path));
  return s;
}

}  // namespace

json parse_json(std::string_view text, const JsonSource& source, int max_depth) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  const char* consumed = begin;
  Builder b(max_depth);
  // The parser ends the text at a NUL byte: refuse it, naming the key it is in.
  if (const void* nul = std::memchr(begin, '\0', text.size())) {
    const char* at = static_cast<const char*>(nul);
    Builder before(max_depth);
    run_parser(begin, at, before, consumed);
    fail("{}: a raw NUL byte (JSON text cannot hold one; inside a string write \\u0000)",
         where(source, text, size_t(at - begin), before.path()));
  }
  if (!run_parser(begin, end, b, consumed)) {
    // The parser has read the character it stops at (or, at the end, nothing more).
    size_t offset = consumed > begin ? size_t(consumed - begin) - 1 : 0;
    // A number is read one character past its end: point at its start.
    if (!b.number.empty()) offset = std::min(offset, text.rfind(b.number, offset));
    fail("{}: {}", where(source, text, offset, b.path()), b.problem);
  }
  return std::move(b.root);
}

json read_json_file(const std::string& path, std::string_view what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("{}: the {} is a directory, not a file", path, what);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the {}", path, what);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail("{}: cannot read the {}", path, what);
  return parse_json(text.str(), {path});
}

namespace {

template <class Int>
bool integer_in_range(const json& v, Int& out) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<Int>::max())) return false;
    out = Int(u);
    return true;
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if constexpr (std::is_unsigned_v<Int>) {
      if (i < 0) return false;
    } else if (i < int64_t(std::numeric_limits<Int>::min()) || i > int64_t(std::numeric_limits<Int>::max())) {
      return false;
    }
    out = Int(i);
    return true;
  }
  return false;
}

}  // namespace

template <class T>
T json_as(const json& v, std::string_view key, const JsonSource& source) {
  if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) fail("{}: must be a string, not {}", source.at(key), v.type_name());
    return v.get<std::string>();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) fail("{}: must be true or false, not {}", source.at(key), v.type_name());
    return v.get<bool>();
  } else if constexpr (std::is_same_v<T, double>) {
    if (!v.is_number()) fail("{}: must be a number, not {}", source.at(key), v.type_name());
    return v.get<double>();
  } else {
    if (!v.is_number_integer())
      fail("{}: must be an integer, not {}", source.at(key), v.is_number() ? v.dump() : std::string(v.type_name()));
    T out{};
    if (!integer_in_range(v, out))
      fail("{}: {} is out of range ({} to {})", source.at(key), v.dump(), std::numeric_limits<T>::min(),
           std::numeric_limits<T>::max());
    return out;
  }
}

template <class T>
T json_value(const json& object, std::string_view key, const JsonSource& source) {
  if (!object.is_object()) fail("{}: expected a JSON object, got {}", source.at(), object.type_name());
  const auto it = object.find(key);
  if (it == object.end()) fail("{}: missing key \"{}\"", source.at(), printable(key));
  return json_as<T>(*it, key, source);
}

#define MP_JSON_TYPE(T)                                                           \
  template T json_as<T>(const json&, std::string_view, const JsonSource&); \
  template T json_value<T>(const json&, std::string_view, const JsonSource&);
MP_JSON_TYPE(std::string)
MP_JSON_TYPE(bool)
MP_JSON_TYPE(int64_t)
MP_JSON_TYPE(uint64_t)
MP_JSON_TYPE(double)
#undef MP_JSON_TYPE

std::string json_lookup_error(const JsonSource& source, const json::exception& e) {
  return fmt::format("{}: {}", source.at(), plain_message(e));
}

}  // namespace mp::nn
