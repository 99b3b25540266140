#include "parallel/communicator.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <cstring>
#include <vector>

#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"
#include "engine/error.h"

namespace mp::parallel {

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

class Planning : public Communicator {
 public:
  explicit Planning(int ranks) : ranks_(ranks) {
    if (ranks < 1) fail("--ranks must be at least 1, got {}", ranks);
  }
  int rank() const override { return 0; }
  int size() const override { return ranks_; }
  std::string name() const override { return "planned"; }
  std::unique_ptr<Pending> all_reduce_sum(const Tensor& t) override {
    check_meta(t);
    count(t.nbytes());
    return std::make_unique<Done>();
  }
  std::unique_ptr<Pending> all_gather(const Tensor& part, const Tensor& whole) override {
    check_meta(part);
    check_meta(whole);
    count(part.nbytes());
    return std::make_unique<Done>();
  }
  void abort_all(int) override {}

 private:
  static void check_meta(const Tensor& t) {
    if (!t.device().is_meta()) fail("the planning communicator moves no bytes: {} is not a meta tensor", t.device().str());
  }
  int ranks_;
};

// mpirun sets these in every process it starts (OpenMPI, then MPICH/PMI).
bool launched_by_mpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE"); }

// This process's rank among those mpirun started on its node (OpenMPI, then MPICH).
int local_rank() {
  const char* r = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (!r) r = std::getenv("MPI_LOCALRANKID");
  return r ? std::max(0, std::atoi(r)) : 0;
}

}  // namespace

int launched_ranks() {
  const char* n = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (!n) n = std::getenv("PMI_SIZE");
  return n ? std::max(1, std::atoi(n)) : 1;
}

void require_one_process(const char* command) {
  if (launched_ranks() > 1)
    fail("minipeft {} runs in one process, not under mpirun with {} ranks (data parallel: train and bench)", command,
         launched_ranks());
}

double collective_timeout() {
  const char* s = std::getenv("MP_DIST_TIMEOUT");
  if (!s || !*s) return 600;
  char* end = nullptr;
  const double v = std::strtod(s, &end);
  if (*end != '\0' || !(v > 0)) fail("MP_DIST_TIMEOUT={} is not a positive number of seconds", s);
  return v;
}

void wait_for(const std::function<bool()>& done, int rank, const char* what, double timeout,
              const std::function<void()>& give_up) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  for (int tries = 0; !done(); ++tries) {
    if (std::chrono::duration<double>(Clock::now() - start).count() > timeout) {
      if (give_up) give_up();
      fail("rank {}: {} did not complete in {} s: another rank has stopped (see its error) (MP_DIST_TIMEOUT)", rank,
           what, timeout);
    }
    if (tries < 1000) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

std::unique_ptr<Communicator> single_process() { return std::make_unique<SingleProcess>(); }
std::unique_ptr<Communicator> planning(int ranks) { return std::make_unique<Planning>(ranks); }

// The worlds are never deleted: MPI's keeps host buffers (tensors), which
// must not be freed after the ledger at exit; the process's end frees all.
Communicator& world() {
  static Communicator* w = (launched_by_mpirun() ? mpi_world() : single_process()).release();
  return *w;
}

Communicator& world(Device device) {
  if (device.type != DeviceType::cuda || !launched_by_mpirun()) return world();
  static Communicator* gpus = nccl(world(), device.index).release();
  return *gpus;
}

Device rank_device(std::string_view name) {
  const Device d = parse_device(name);
  if (d.type != DeviceType::cuda || launched_ranks() == 1) return d;
  if (name != "cuda")
    fail("--device {} under mpirun with {} ranks: every rank would use that one GPU; --device cuda gives each rank "
         "its own (local rank modulo the node's GPUs; CUDA_VISIBLE_DEVICES chooses which)",
         name, launched_ranks());
  const int gpus = visible_gpus();
  return gpus > 0 ? Device{DeviceType::cuda, local_rank() % gpus} : d;  // none: the backend's error comes later
}

double all_reduce_sum(Communicator& comm, double value) {
  if (comm.size() == 1) return value;
  Tensor t = Tensor::from_vector(std::vector<double>{value}, {1}, Tag::workspace);
  comm.all_reduce_sum(t)->wait();
  return t.item();
}

std::vector<double> all_gather(Communicator& comm, double value) {
  Tensor mine = Tensor::from_vector(std::vector<double>{value}, {1}, Tag::workspace);
  Tensor all = Tensor::empty({comm.size()}, DType::f64, kCPU, Tag::workspace);
  comm.all_gather(mine, all)->wait();
  return {all.data<double>(), all.data<double>() + comm.size()};
}

}  // namespace mp::parallel
