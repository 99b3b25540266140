// main() of the CUDA test programs: runs the doctest cases when a GPU is
// present, else exits 77 (a skip for Meson) with one line saying why.
#pragma once
#include <doctest/doctest.h>

#include <cstdio>

#include "cuda/cuda_backend.h"
#include "engine/backend.h"

namespace mp::test {

inline int run_on_gpu(int argc, char** argv) {
  if (cuda::device_count() <= 0 || !has_backend(DeviceType::cuda)) {
    std::puts("no CUDA device: skipping");
    return 77;
  }
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}

}  // namespace mp::test
