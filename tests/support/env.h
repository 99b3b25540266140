// Where the tests find their inputs: MP_FIXTURES (tests/fixtures), MP_DATA
// (data/) and MP_MINIPEFT (the built minipeft), all set by `meson test`.
#pragma once
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

namespace mp::test {

inline std::string env_dir(const char* var) {
  const char* dir = std::getenv(var);
  REQUIRE_MESSAGE(dir != nullptr, std::string(var) << " is not set (meson test sets it)");
  return dir;
}
inline std::string fixtures_dir() { return env_dir("MP_FIXTURES"); }
inline std::string data_dir() { return env_dir("MP_DATA"); }

}  // namespace mp::test
