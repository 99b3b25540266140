// Writing a file so that it is either the old file or the complete new one,
// never half of each: the bytes go to "<path>.tmp.<pid>", are flushed and
// fsync'ed, and only then renamed over `path` (rename is atomic on POSIX).
// If anything fails (the writer throws, the disk is full, the directory is
// not writable) the temporary is removed, the old file is left as it was,
// and an mp::Error names the path.
#pragma once
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

namespace mp::nn {

// `write` writes the whole content to the FILE*. It may use write_bytes.
void write_file_atomically(const std::string& path, const std::function<void(std::FILE*)>& write);
void write_file_atomically(const std::string& path, std::string_view bytes);

// fwrite all of `bytes`, or throw mp::Error naming `path`.
void write_bytes(std::FILE* f, const void* bytes, size_t size, const std::string& path);

}  // namespace mp::nn
