// The MPI communicator: ranks started by mpirun, collectives through MPI's
// non-blocking calls (MPI_Iallreduce, MPI_Iallgather), waited on with a
// timeout so that a rank that died cannot hang the others. CPU tensors are
// sent as they are; a tensor on a device (sim, CUDA without NCCL) is copied
// to a reused host buffer and its result back (parallel/host_staging.h).
//
// Built only with MPI (meson -Dmpi=auto finds OpenMPI's libopenmpi-dev);
// without it mpi_world() is an mp::Error that says how to build with it.
#pragma once
#include <memory>

#include "parallel/communicator.h"

namespace mp::parallel {

// MPI_COMM_WORLD (MPI_Init at the first call, MPI_Finalize at exit). A
// collective not complete after MP_DIST_TIMEOUT seconds (default 600) is an
// mp::Error naming the rank.
std::unique_ptr<Communicator> mpi_world();

}  // namespace mp::parallel
