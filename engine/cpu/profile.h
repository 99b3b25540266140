// Per-kernel timing of the CPU backend. MP_PROFILE=1 in the environment
// times every kernel call and prints the totals per kind of kernel to stderr
// when the program exits; MP_PROFILE=2 splits matmul by shape and other
// kernels by output shape. Kernels are called from one thread (each runs its
// own OpenMP or BLAS threads inside), so the counters need no lock.
//
//   void softmax(...) override { Timed t("softmax"); cpu::softmax(...); }
#pragma once
#include <chrono>
#include <string>

#include "engine/tensor.h"

namespace mp::cpu {

// Times one kernel call when profiling is on; costs one branch when it is off.
class Timed {
 public:
  explicit Timed(const char* kind);
  // matmul at MP_PROFILE=2: (batch, M, N) with K, the transpose flags and b's dtype.
  Timed(const char* kind, const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& out);
  // Other kernels at MP_PROFILE=2: the kind, the output's shape and whether any operand is strided.
  Timed(const char* kind, const Tensor& out, const Tensor& in);
  ~Timed();
  Timed(const Timed&) = delete;
  Timed& operator=(const Timed&) = delete;

 private:
  bool on_;
  const char* kind_;
  std::string detail_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace mp::cpu
