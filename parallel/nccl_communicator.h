// The NCCL communicator: collectives on CUDA tensors (cuda/nccl_comm.h),
// the ranks bootstrapped by another communicator as llm.c does: rank 0 makes
// NCCL's id and `bootstrap` (MPI's world under mpirun) hands it to every
// rank. Built only with CUDA and NCCL (the toolkit's libnccl).
//
// The trainer does not run on the GPU yet, so nothing selects this
// communicator on its own: it is the piece a GPU data-parallel trainer plugs
// in where parallel::world() stands for the CPU.
#pragma once
#include <memory>

#include "parallel/communicator.h"

namespace mp::parallel {

// A communicator over the same ranks as `bootstrap` (every rank calls it
// together). A collective not complete after MP_DIST_TIMEOUT seconds (600)
// aborts the NCCL communicator and is an mp::Error naming the rank.
std::unique_ptr<Communicator> nccl(Communicator& bootstrap);

}  // namespace mp::parallel
