#include "cli/omp_wait.h"

#include <unistd.h>

#include <cstdlib>

namespace mp {

void restart_with_passive_omp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY")) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);
}

}  // namespace mp
