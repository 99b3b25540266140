// minipeft: the command-line program. Exit codes: 0 success, 1 bad input
// (the one-line error names the file, key or shape), 2 bad usage. No
// exception leaves main: one that is not an mp::Error (a bug, or a library's
// exception a reader let through) is still one line and exit 1, never
// std::terminate.
#include <cstdio>
#include <exception>
#include <string>

#include "engine/error.h"
#include "cli/command.h"
#include "cli/omp_wait.h"

namespace {

// The error as one line: a message's newlines would make it several.
int error_exit(const char* what) {
  std::string line = what;
  for (char& c : line)
    if (c == '\n' || c == '\r') c = ' ';
  std::fprintf(stderr, "error: %s\n", line.c_str());
  return 1;
}

}  // namespace

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
    return error_exit(e.what());
  } catch (const std::bad_alloc&) {
    return error_exit("out of memory");
  } catch (const std::exception& e) {
    return error_exit((std::string("unexpected: ") + e.what()).c_str());
  } catch (...) {
    return error_exit("unexpected exception of an unknown type");
  }
  return 0;
}
