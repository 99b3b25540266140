// Running another program (gnuplot) without a shell, so that no character of
// a path can become a command.
#pragma once
#include <string>
#include <vector>

namespace mp::cli {

// Runs argv[0] (looked up in PATH) with arguments argv[1..] in the folder
// `dir`, its stdout and stderr going to the file `output` (a path relative
// to `dir` or absolute), and waits for it. Returns its exit status, or -1 if
// it could not be started (not installed) or was killed by a signal.
int run_program(const std::vector<std::string>& argv, const std::string& dir, const std::string& output);

}  // namespace mp::cli
