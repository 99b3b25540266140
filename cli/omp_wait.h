// Idle OpenMP threads must sleep, not spin, or they take the cores that
// OpenBLAS's threads need in the GEMM after each parallel region (measured:
// layer norm 80x slower, a GPT-2 training step 1.7-2.6x slower;
// docs/benchmarks.md). libgomp reads OMP_WAIT_POLICY once, when it is loaded,
// so a program that wants it must set it and start again.
#pragma once

namespace mp {

// When OMP_WAIT_POLICY is unset: set it to passive and re-execute this
// program with the same arguments (does not return). When it is set, or the
// re-execution fails, return and carry on as we are.
void restart_with_passive_omp_wait(char** argv);

}  // namespace mp
