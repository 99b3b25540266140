#include "train/kill_hook.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "engine/error.h"

namespace mp::train {

KillHook KillHook::from_env(int rank) {
  KillHook hook;
  const char* value = std::getenv("MP_TRAIN_KILL_AT");
  if (!value) return hook;
  if (const char* only = std::getenv("MP_TRAIN_KILL_RANK")) {
    char* end = nullptr;
    const long r = std::strtol(only, &end, 10);
    if (!*only || *end != '\0' || r < 0) fail("MP_TRAIN_KILL_RANK={}: expected a rank (0, 1, ...)", only);
    if (r != rank) return hook;
  }
  const std::string v = value;
  const size_t colon = v.find(':');
  const std::string point = v.substr(0, colon);
  if (point == "after-log") hook.point_ = KillPoint::after_log;
  else if (point == "in-checkpoint") hook.point_ = KillPoint::in_checkpoint;
  else if (point == "after-checkpoint") hook.point_ = KillPoint::after_checkpoint;
  else fail("MP_TRAIN_KILL_AT={}: expected after-log:<step>, in-checkpoint:<step> or after-checkpoint:<step>", v);
  char* end = nullptr;
  const std::string step = colon == std::string::npos ? "" : v.substr(colon + 1);
  hook.step_ = std::strtoll(step.c_str(), &end, 10);
  if (step.empty() || *end != '\0' || hook.step_ <= 0) fail("MP_TRAIN_KILL_AT={}: the step must be a positive integer", v);
  hook.armed_ = true;
  return hook;
}

void KillHook::at(KillPoint point, int64_t step) const {
  if (armed_ && point == point_ && step == step_) ::kill(::getpid(), SIGKILL);
}

void KillHook::before_checkpoint(int64_t step, size_t bytes) const {
  if (!armed_ || point_ != KillPoint::in_checkpoint || step != step_) return;
  ::signal(SIGXFSZ, SIG_DFL);  // an inherited "ignore" would turn the kill into a write error
  const rlimit no_core{0, 0}, half{rlim_t(bytes / 2), rlim_t(bytes / 2)};
  ::setrlimit(RLIMIT_CORE, &no_core);
  ::setrlimit(RLIMIT_FSIZE, &half);
}

}  // namespace mp::train
