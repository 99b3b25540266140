// The NCCL communicator: collectives on CUDA tensors (cuda/nccl_comm.h),
// the ranks bootstrapped by another communicator as llm.c does: rank 0 makes
// NCCL's id and `bootstrap` (MPI's world under mpirun) hands it to every
// rank. Collectives on host tensors (a loss, a count) go to `bootstrap`.
// parallel::world(device) selects it for CUDA under mpirun.
//
// Built with CUDA and NCCL (the toolkit's libnccl); in a build without them
// (parallel/no_nccl.cpp) nccl() is an mp::Error naming what is missing and
// visible_gpus() is 0.
#pragma once
#include <memory>

#include "parallel/communicator.h"

namespace mp::parallel {

// A communicator over the same ranks as `bootstrap` (every rank calls it
// together), this process on GPU `gpu` (made the current GPU before any
// CUDA work: the backend and NCCL use it). A collective not complete after
// MP_DIST_TIMEOUT seconds (600) aborts the NCCL communicator and is an
// mp::Error naming the rank.
std::unique_ptr<Communicator> nccl(Communicator& bootstrap, int gpu = 0);

// The GPUs this process can use (0 without any, or without CUDA and NCCL).
int visible_gpus();

}  // namespace mp::parallel
