// The main of the data-parallel tests: exit 77 (a skip for Meson) when the
// build has no MPI (meson sets MP_MPIRUN only when it found MPI and mpirun).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  if (!std::getenv("MP_MPIRUN")) {
    std::puts("skipped: built without MPI (install libopenmpi-dev, reconfigure with -Dmpi=enabled)");
    return 77;
  }
  return doctest::Context(argc, argv).run();
}
