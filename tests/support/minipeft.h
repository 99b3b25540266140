// Shared by the CLI tests: data paths and small files (temp folders and the
// environment: tests/support/).
#pragma once
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

#include "tests/support/env.h"
#include "tests/support/temp_dir.h"

namespace mp::test {

inline std::string data_path(const std::string& rel) { return data_dir() + "/" + rel; }

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Run the built minipeft binary (MP_MINIPEFT) with `args` through the shell.
struct Run {
  int code;            // exit code (128 + signal when killed)
  std::string output;  // stdout and stderr
};

inline Run minipeft(const std::string& args) {
  std::string cmd = env_dir("MP_MINIPEFT") + " " + args + " 2>&1";
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
