// Kill and resume through the real minipeft binary (MP_MINIPEFT). A hook
// (MP_TRAIN_KILL_AT, train/kill_hook.h) stops the run at a chosen point of a
// chosen step, deterministically; then --resume runs it to the end. After
// every kill point each step appears exactly once in log.jsonl, with the
// loss of an uninterrupted run, bit for bit.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/error.h"
#include "nn/safetensors.h"
#include "tests/support/minipeft.h"
#include "train/train_log.h"
#include "train/trainer.h"

extern char** environ;

using namespace mp;

namespace {

// LoRA with dropout, so that a resume must also replay the dropout masks.
std::vector<std::string> train_args(const std::string& out) {
  return {"train", "--no-progress", "--model", "gpt2-tiny", "--method", "lora", "--lora-dropout", "0.1",
          "--data", test::data_path("legal/licenses.txt"), "--batch", "2", "--seq", "32", "--steps", "8",
          "--warmup", "2", "--checkpoint-every", "3", "--out", out};
}

// Runs minipeft with `args` (and MP_TRAIN_KILL_AT=kill_at unless empty), stdout
// discarded; returns the wait status.
int run_minipeft(std::vector<std::string> args, const std::string& kill_at = "") {
  const std::string exe = test::env_dir("MP_MINIPEFT");
  args.insert(args.begin(), exe);
  std::vector<char*> argv, envp;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string hook = "MP_TRAIN_KILL_AT=" + kill_at;
  for (char** e = environ; *e; ++e) envp.push_back(*e);
  if (!kill_at.empty()) envp.push_back(hook.data());
  envp.push_back(nullptr);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // only async-signal-safe calls here: the parent may have threads
    const int null = open("/dev/null", O_WRONLY);  // its summary line is not needed
    dup2(null, STDOUT_FILENO);
    execve(exe.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  int status = 0;
  waitpid(child, &status, 0);
  return status;
}

struct LogLine {
  int64_t step;
  double loss;
};

std::vector<LogLine> read_log(const std::string& out_dir) {
  std::ifstream in(train::log_path(out_dir));
  std::vector<LogLine> lines;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    lines.push_back({j["step"].get<int64_t>(), j["loss"].get<double>()});
  }
  return lines;
}

int64_t checkpoint_step(const std::string& out_dir) {
  nn::SafetensorsFile f = nn::SafetensorsFile::open(train::checkpoint_path(out_dir));
  return nlohmann::json::parse(f.metadata().at("minipeft_checkpoint"))["step"].get<int64_t>();
}

// The temporaries a checkpoint write leaves when it is killed (nn/atomic_file.h).
std::vector<std::filesystem::path> temporaries(const std::string& out_dir) {
  std::vector<std::filesystem::path> found;
  for (const auto& e : std::filesystem::directory_iterator(out_dir))
    if (e.path().filename().string().rfind("checkpoint.safetensors.tmp.", 0) == 0) found.push_back(e.path());
  return found;
}

}  // namespace

TEST_CASE("killed at any point and resumed: every step logged once, losses as an uninterrupted run") {
  test::TempDir whole("resume_whole");
  REQUIRE(run_minipeft(train_args(whole.path.string())) == 0);
  const std::vector<LogLine> want = read_log(whole.path.string());
  REQUIRE(want.size() == 8);

  struct Case {
    std::string kill_at;
    int signal;
    int64_t logged, checkpointed;  // the last step in the log and in the checkpoint when killed
  };
  for (const Case& c : {Case{"after-log:5", SIGKILL, 5, 3}, Case{"after-checkpoint:6", SIGKILL, 6, 6},
                        Case{"in-checkpoint:6", SIGXFSZ, 6, 3}}) {
    CAPTURE(c.kill_at);
    test::TempDir d("resume_killed");
    const std::string out = d.path.string();
    const int status = run_minipeft(train_args(out), c.kill_at);
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == c.signal);
    std::vector<LogLine> before = read_log(out);
    REQUIRE(!before.empty());
    CHECK(before.back().step == c.logged);
    CHECK(checkpoint_step(out) == c.checkpointed);  // whole: it loads, and it is the last one completed
    if (c.signal == SIGXFSZ) CHECK(temporaries(out).size() == 1);  // killed halfway through the write

    std::vector<std::string> resume = train_args(out);
    resume.push_back("--resume");
    const int resumed = run_minipeft(resume);
    REQUIRE(WIFEXITED(resumed));
    REQUIRE(WEXITSTATUS(resumed) == 0);
    std::vector<int> times_logged(want.size() + 1, 0);
    for (const LogLine& line : read_log(out)) {
      REQUIRE(line.step >= 1);
      REQUIRE(line.step <= int64_t(want.size()));
      ++times_logged[size_t(line.step)];
      CHECK(line.loss == want[size_t(line.step - 1)].loss);  // exactly, not approximately
    }
    for (size_t step = 1; step <= want.size(); ++step) {
      CAPTURE(step);
      CHECK(times_logged[step] == 1);
    }
    CHECK(temporaries(out).empty());
  }
}

TEST_CASE("a resumed log keeps the lines up to the checkpoint's step and drops a torn last line") {
  test::TempDir d("resume_log");
  const std::string path = train::log_path(d.path.string());
  test::write_file(path, "{\"step\":1,\"loss\":3.5}\n{\"step\":2,\"loss\":3.25}\n{\"step\":3,\"loss\":3.0}\n{\"step\":4,\"lo");
  auto lines_after_resume = [&](int64_t step) {
    { train::TrainLog log = train::TrainLog::resume(path, step); }
    return read_log(d.path.string());
  };
  std::vector<LogLine> kept = lines_after_resume(3);  // the torn line of step 4 is dropped
  REQUIRE(kept.size() == 3);
  CHECK(kept.back().step == 3);
  kept = lines_after_resume(2);
  REQUIRE(kept.size() == 2);
  CHECK(kept.back().loss == 3.25);
  test::write_file(path, "{\"step\":1,\"loss\":3.5}\nnot json\n");
  CHECK_THROWS_WITH_AS(train::TrainLog::resume(path, 1), doctest::Contains("line 2"), Error);
}
