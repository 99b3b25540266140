// Shared by the CLI tests: paths from the environment, temp folders, small files.
#pragma once
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
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

// Run the built minipeft binary (MP_MINIPEFT) with `args` through the shell.
struct Run {
  int code;            // exit code (128 + signal when killed)
  std::string output;  // stdout and stderr
};

inline Run minipeft(const std::string& args) {
  std::string cmd = env_path("MP_MINIPEFT") + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  Run r{0, ""};
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.output.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace mp::test
