// A fresh, empty folder under the system temp dir for one test, removed with
// its contents when the TempDir goes out of scope. The name is unique per
// process and per TempDir: mp_test_<name>_<pid>_<n>.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>

namespace mp::test {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name = "tmp") {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("mp_test_" + name + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string str() const { return path.string(); }
  std::string operator/(const std::string& rel) const { return (path / rel).string(); }
};

}  // namespace mp::test
