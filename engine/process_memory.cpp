#include "engine/process_memory.h"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>

namespace mp {

size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;  // total program size, then resident, in pages
  statm >> pages >> resident;
  return resident * size_t(sysconf(_SC_PAGESIZE));
}

size_t peak_resident_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return size_t(u.ru_maxrss) * 1024;  // KiB on Linux
}

}  // namespace mp
