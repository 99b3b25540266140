// Shared by the CLI tests: paths from the environment, temp folders, small files.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace mp::test {

inline std::string env_path(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}
inline std::string data_path(const std::string& rel) { return env_path("MP_DATA") + "/" + rel; }

// A fresh, empty folder under the system temp dir, removed by the destructor.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name)
      : path(std::filesystem::temp_directory_path() / ("mp_test_" + name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& rel) const { return (path / rel).string(); }
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace mp::test
