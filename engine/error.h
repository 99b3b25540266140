// mp::Error: the one exception type for errors a user can cause (a bad file,
// a bad shape, a bad config key, a bad flag). Its message names the file, key
// or shape. Bugs are asserts, not Errors.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace mp {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// fail("shape {} does not match {}", a, b): format the message and throw.
template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace mp
