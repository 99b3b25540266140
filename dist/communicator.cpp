#include "dist/communicator.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "dist/mpi_communicator.h"
#include "engine/error.h"

namespace mp::dist {

namespace {

struct Done : Pending {
  void wait() override {}
};

class SingleProcess : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single process"; }
  std::unique_ptr<Pending> all_reduce_sum(const Tensor&) override { return std::make_unique<Done>(); }
  std::unique_ptr<Pending> all_gather(const Tensor& part, const Tensor& whole) override {
    if (part.nbytes() != whole.nbytes())
      fail("all_gather: {} into {} over one rank", shape_str(part.shape()), shape_str(whole.shape()));
    if (part.storage() != whole.storage() || part.offset() != whole.offset()) Tensor(whole).copy_from(part);
    return std::make_unique<Done>();
  }
  void abort_all(int) override {}
};

// mpirun sets these in every process it starts (OpenMPI, then MPICH/PMI).
bool launched_by_mpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE"); }

}  // namespace

std::unique_ptr<Communicator> single_process() { return std::make_unique<SingleProcess>(); }

Communicator& world() {
  static std::unique_ptr<Communicator> w = launched_by_mpirun() ? mpi_world() : single_process();
  return *w;
}

double all_reduce_sum(Communicator& comm, double value) {
  if (comm.size() == 1) return value;
  Tensor t = Tensor::from_vector(std::vector<double>{value}, {1}, Tag::workspace);
  comm.all_reduce_sum(t)->wait();
  return t.item();
}

}  // namespace mp::dist
