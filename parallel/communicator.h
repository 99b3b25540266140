// The processes of a data-parallel run and the collectives the trainer
// needs between them. Each process (a "rank") holds a whole model; the
// trainer splits every batch across ranks and averages the gradients.
//
//   parallel::Communicator& comm = parallel::world(device);  // MPI or NCCL under mpirun, else one process
//   auto pending = comm.all_reduce_sum(grads);  // starts; returns at once
//   ... more backward ...
//   pending->wait();                            // grads now hold the sum over ranks
//
// Three implementations: one process (every collective is the identity: the
// sum over one rank is its own value), MPI (parallel/mpi_communicator.h:
// CPU tensors, and device tensors through host buffers) and NCCL for CUDA
// tensors (parallel/nccl_communicator.h). world(device) picks one. Nothing
// below this layer knows of ranks; it sees at most nn::BatchRows (which rows
// of a batch this process computes).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tensor.h"

namespace mp::parallel {

// A collective in flight. wait() returns when its result is in place, or
// throws mp::Error when the other ranks do not take part within the
// communicator's timeout (a rank that died or failed).
class Pending {
 public:
  virtual ~Pending() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "single process", "MPI", ...

  // Start summing `t` (contiguous f32 or f64) over all ranks, in place.
  virtual std::unique_ptr<Pending> all_reduce_sum(const Tensor& t) = 0;
  // Start gathering every rank's `part` into `whole` (size() parts of the
  // same bytes, in rank order; contiguous, same dtype).
  virtual std::unique_ptr<Pending> all_gather(const Tensor& part, const Tensor& whole) = 0;
  // Let collectives in flight advance (MPI moves data only inside its calls).
  virtual void progress() {}
  // Stop every rank after a fatal error on this one; exits with `code`.
  [[noreturn]] void abort(int code) {
    abort_all(code);
    std::_Exit(code);
  }

  // Bytes handed to collectives so far (this rank's payload, not what the
  // wire carries: a ring all-reduce sends 2 (N - 1) / N of it).
  uint64_t bytes() const { return bytes_; }

 protected:
  void count(uint64_t bytes) { bytes_ += bytes; }
  virtual void abort_all(int code) = 0;

 private:
  uint64_t bytes_ = 0;
};

// How long a collective may wait for the other ranks: MP_DIST_TIMEOUT
// seconds (default 600); mp::Error for a value that is not a positive number.
double collective_timeout();

// Polls `done` (yielding, then sleeping 200 us between calls) until it says
// true. After `timeout` seconds: `give_up` (if any), then mp::Error naming
// `rank` and `what`: a rank that died must not hang the others.
void wait_for(const std::function<bool()>& done, int rank, const char* what, double timeout,
              const std::function<void()>& give_up = {});

// A communicator of one process.
std::unique_ptr<Communicator> single_process();

// A stand-in for `ranks` ranks, this process rank 0, for the memory planner
// (train/memory_plan.h): its collectives take meta tensors (shapes, no
// bytes) and do nothing, as the meta backend's kernels do.
std::unique_ptr<Communicator> planning(int ranks);

// How many processes mpirun started for this job (1 when not under mpirun),
// read from mpirun's environment without starting MPI.
int launched_ranks();
// mp::Error when launched by mpirun with more than one rank: `command` runs
// in one process (every rank would write the same files).
void require_one_process(const char* command);

// This process's world: MPI's when the program was launched by mpirun and
// built with MPI (-Dmpi), else one process. Made at the first call. Its
// collectives take host tensors and, staged through host buffers, device ones.
Communicator& world();

// The one place that chooses the communicator of a run's tensors on `device`:
// under mpirun on CUDA, NCCL over world() (made at the first call, which
// makes device.index this process's GPU: call it before the first CUDA
// tensor; its host tensors, a loss, go through world()); anywhere else
// world() (the CPU, sim; one process). On CUDA in a build without CUDA it is
// the missing backend's error, as without mpirun; with CUDA but no NCCL an
// mp::Error that says so.
Communicator& world(Device device);

// This rank's device for `--device name`. Under mpirun with several ranks
// "cuda" is the GPU (local rank) % (GPUs this node shows), the local rank
// being mpirun's OMPI_COMM_WORLD_LOCAL_RANK; "cuda:N" is an mp::Error there,
// as every rank would take GPU N (CUDA_VISIBLE_DEVICES chooses which GPUs
// "cuda" shares out). Anywhere else parse_device(name).
Device rank_device(std::string_view name);

// A blocking sum of one number over the ranks (a loss, a count).
double all_reduce_sum(Communicator& comm, double value);
// Every rank's `value`, in rank order (exact below 2^53).
std::vector<double> all_gather(Communicator& comm, double value);

}  // namespace mp::parallel
