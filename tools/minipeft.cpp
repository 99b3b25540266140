// minipeft: the command-line program. Exit codes: 0 success, 1 bad input
// (the one-line error names the file, key or shape), 2 bad usage.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "engine/error.h"
#include "tools/cli/command.h"

int main(int argc, char** argv) {
  // Idle OpenMP threads must sleep, not spin, or they starve OpenBLAS's
  // threads (measured: layer norm 80x slower). libgomp reads the setting
  // once, at load time, so set it and start again.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // on failure, carry on with the default policy
  }
  CLI::App app{"minipeft: train, evaluate and compare full fine-tuning, LoRA, prompt and prefix tuning"};
  app.require_subcommand(1);
  mp::cli::add_tokenize(app);
  mp::cli::add_train(app);
  mp::cli::add_eval(app);
  mp::cli::add_generate(app);
  mp::cli::add_merge(app);
  mp::cli::add_info(app);
  mp::cli::add_bench(app);
  mp::cli::add_compare(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const mp::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  }
  return 0;
}
