#include "train/data/line_reader.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "engine/error.h"

namespace mp::train {

std::ifstream open_input_file(const std::string& path, std::string_view what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("{} is a directory, not a {}", path, what);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read {} {}: {}", what, path, std::strerror(errno));
  return in;
}

bool LineReader::next(std::string& line) {
  line.clear();
  for (;;) {
    if (begin_ == end_) {
      begin_ = 0;
      end_ = size_t(in_.rdbuf()->sgetn(buffer_.data(), std::streamsize(buffer_.size())));
      if (end_ == 0) {  // the end: a last line without "\n", or nothing
        if (line.empty()) return false;
        ++number_;
        return true;
      }
    }
    const char* start = buffer_.data() + begin_;
    const char* newline = static_cast<const char*>(std::memchr(start, '\n', end_ - begin_));
    const size_t n = newline ? size_t(newline - start) : end_ - begin_;
    if (line.size() + n > kMaxLineBytes)
      fail("{} line {}: longer than 1 MiB, the limit for one line", name_, number_ + 1);
    line.append(start, n);
    begin_ += n;
    if (newline) {
      ++begin_;
      ++number_;
      return true;
    }
  }
}

}  // namespace mp::train
