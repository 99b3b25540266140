// Who may read a device's bytes from the host. On the CPU anyone may; a
// CUDA tensor's bytes are GPU memory, which host code cannot read; the sim
// device (engine/device.h) keeps its bytes in host memory yet enforces the
// GPU's rule: Tensor::raw() and data<T>() of a sim tensor are an mp::Error
// unless a kernel is running. The CPU backend, which also serves the sim
// device, opens a KernelScope around every kernel call
// (engine/cpu/profile.h); host code copies with .to(kCPU) or reads .item().
#pragma once

namespace mp {

class KernelScope {
 public:
  KernelScope();
  ~KernelScope();
  KernelScope(const KernelScope&) = delete;
  KernelScope& operator=(const KernelScope&) = delete;
};

// Whether a kernel is running. Kernels are called from one thread and run
// their OpenMP threads inside, so the count is process-wide.
bool inside_kernel();

}  // namespace mp
