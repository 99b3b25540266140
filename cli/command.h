// Each `minipeft` subcommand lives in cli/<name>.cpp and registers
// itself on the CLI11 app: it adds its options and a callback that does the
// work. Errors a user can cause are thrown as mp::Error; main() prints them
// and exits 1 (usage errors exit 2).
#pragma once
#include <CLI/CLI.hpp>

namespace mp::cli {

void add_tokenize(CLI::App& app);
void add_train(CLI::App& app);
void add_eval(CLI::App& app);
void add_generate(CLI::App& app);
void add_merge(CLI::App& app);
void add_info(CLI::App& app);
void add_bench(CLI::App& app);
void add_compare(CLI::App& app);

}  // namespace mp::cli
