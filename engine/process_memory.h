// The process's resident memory as the operating system counts it (Linux):
// what the memory planner's planned_rss_bytes predicts.
#pragma once
#include <cstddef>

namespace mp {

size_t resident_bytes();       // now (/proc/self/statm)
size_t peak_resident_bytes();  // the most since the process started (getrusage's ru_maxrss)

}  // namespace mp
