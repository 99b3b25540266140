// One kernel call of the CPU backend (which also serves the sim device): it
// lets the kernel read the sim device's bytes (engine/host_access.h), and
// times the call under MP_PROFILE.
//
// Per-kernel timing: MP_PROFILE=1 in the environment
// times every kernel call and prints the totals per kind of kernel to stderr
// when the program exits; MP_PROFILE=2 splits matmul by shape and other
// kernels by output shape. Kernels are called from one thread (each runs its
// own OpenMP or BLAS threads inside), so the counters need no lock.
//
//   void softmax(...) override { KernelCall t("softmax"); cpu::softmax(...); }
#pragma once
#include <chrono>
#include <string>

#include "engine/host_access.h"
#include "engine/tensor.h"

namespace mp::cpu {

// Times one kernel call when profiling is on; costs one branch when it is off.
class KernelCall : KernelScope {
 public:
  explicit KernelCall(const char* kind);
  // matmul at MP_PROFILE=2: (batch, M, N) with K, the transpose flags and b's dtype.
  KernelCall(const char* kind, const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& out);
  // Other kernels at MP_PROFILE=2: the kind, the output's shape and whether any operand is strided.
  KernelCall(const char* kind, const Tensor& out, const Tensor& in);
  ~KernelCall();
  KernelCall(const KernelCall&) = delete;
  KernelCall& operator=(const KernelCall&) = delete;

 private:
  bool on_;
  const char* kind_;
  std::string detail_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace mp::cpu
