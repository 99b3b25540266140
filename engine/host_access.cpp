#include "engine/host_access.h"

#include <atomic>

namespace mp {

static std::atomic<int> g_kernels{0};

KernelScope::KernelScope() { g_kernels.fetch_add(1, std::memory_order_relaxed); }
KernelScope::~KernelScope() { g_kernels.fetch_sub(1, std::memory_order_relaxed); }
bool inside_kernel() { return g_kernels.load(std::memory_order_relaxed) > 0; }

}  // namespace mp
