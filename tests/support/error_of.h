// The message of the mp::Error a callable throws, for tests of error messages.
#pragma once
#include <string>

#include "engine/error.h"

namespace mp::test {

// The message of the mp::Error that `f` throws ("" if it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace mp::test
