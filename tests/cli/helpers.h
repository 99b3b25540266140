// Shared by the CLI tests: data paths and small files (temp folders and the
// environment: tests/support/).
#pragma once
#include <fstream>
#include <string>

#include "tests/support/env.h"
#include "tests/support/temp_dir.h"

namespace mp::test {

inline std::string data_path(const std::string& rel) { return data_dir() + "/" + rel; }

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace mp::test
