// A user's text file read a line at a time, each line at most kMaxLineBytes
// (1 MiB): a longer line is an error as soon as the limit is passed, so a file
// of a gigabyte with no newline is refused after reading 1 MiB of it, not
// read whole. Pairs and prompts files (train/data/pairs.h) are read so.
#pragma once
#include <array>
#include <cstdint>
#include <fstream>
#include <istream>
#include <string>
#include <string_view>

namespace mp::train {

// `path` opened for reading as a `what` ("pairs file"), or an mp::Error that
// says why not: missing, unreadable, or a directory.
std::ifstream open_input_file(const std::string& path, std::string_view what);

class LineReader {
 public:
  static constexpr size_t kMaxLineBytes = size_t(1) << 20;

  // `name` names the input in errors ("x.jsonl").
  LineReader(std::istream& in, std::string name) : in_(in), name_(std::move(name)) {}

  // The next line, without its "\n", into `line`; false at the end of the
  // input. mp::Error "x.jsonl line 7: longer than 1 MiB, the limit for one line".
  bool next(std::string& line);
  // The 1-based number of the line next() returned last.
  int64_t number() const { return number_; }

 private:
  std::istream& in_;
  std::string name_;
  int64_t number_ = 0;
  std::array<char, 1 << 16> buffer_{};
  size_t begin_ = 0, end_ = 0;  // the unread part of buffer_
};

}  // namespace mp::train
