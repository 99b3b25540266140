// minipeft: the command-line program. Exit codes: 0 success, 1 bad input
// (the one-line error names the file, key or shape), 2 bad usage.
#include <cstdio>

#include "engine/error.h"
#include "cli/command.h"
#include "cli/omp_wait.h"

int main(int argc, char** argv) {
  mp::restart_with_passive_omp_wait(argv);
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
