#include "nn/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/error.h"

namespace mp::nn {

void write_bytes(std::FILE* f, const void* bytes, size_t size, const std::string& path) {
  if (size > 0 && std::fwrite(bytes, 1, size, f) != size) fail("{}: write failed: {}", path, std::strerror(errno));
}

// The directory holding `path`, to fsync after the rename.
static std::string parent_directory(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void write_file_atomically(const std::string& path, const std::function<void(std::FILE*)>& write) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("{}: cannot write (creating {}): {}", path, tmp, std::strerror(errno));
  try {
    write(f);
    if (std::fflush(f) != 0) fail("{}: write failed: {}", path, std::strerror(errno));
    if (::fsync(::fileno(f)) != 0) fail("{}: fsync failed: {}", path, std::strerror(errno));
    std::FILE* closing = f;
    f = nullptr;
    if (std::fclose(closing) != 0) fail("{}: close failed: {}", path, std::strerror(errno));
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      fail("{}: cannot replace with {}: {}", path, tmp, std::strerror(errno));
  } catch (...) {
    if (f) std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  // Make the rename itself durable. Best effort: some filesystems refuse.
  int dir = ::open(parent_directory(path).c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    (void)::fsync(dir);
    ::close(dir);
  }
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
  write_file_atomically(path, [&](std::FILE* f) { write_bytes(f, bytes.data(), bytes.size(), path); });
}

}  // namespace mp::nn
