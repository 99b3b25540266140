// mpi_world() in a build without MPI.
#include "parallel/mpi_communicator.h"
#include "engine/error.h"

namespace mp::parallel {

std::unique_ptr<Communicator> mpi_world() {
  fail("launched by mpirun, but this minipeft was built without MPI: install libopenmpi-dev (scripts/setup.sh) and "
       "reconfigure (meson setup --reconfigure build -Dmpi=enabled)");
}

}  // namespace mp::parallel
