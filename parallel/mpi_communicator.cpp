#include "parallel/mpi_communicator.h"

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <utility>

#include "engine/error.h"
#include "parallel/host_staging.h"

namespace mp::parallel {

namespace {

void check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  fail("{}: {}", what, std::string(text, size_t(length)));
}

// `done` runs once the request has completed: the staged result back to the device.
class MpiPending : public Pending {
 public:
  MpiPending(MPI_Request request, int rank, double timeout, const char* what, std::function<void()> done)
      : request_(request), rank_(rank), timeout_(timeout), what_(what), done_(std::move(done)) {}
  ~MpiPending() override {
    if (request_ != MPI_REQUEST_NULL) MPI_Request_free(&request_);  // never waited: the error path
  }
  // MPI_Test in a loop: MPI_Wait would block forever on a rank that died.
  void wait() override {
    wait_for(
        [this] {
          int done = 0;
          check(MPI_Test(&request_, &done, MPI_STATUS_IGNORE), what_);
          return done != 0;
        },
        rank_, what_, timeout_);
    if (done_) std::exchange(done_, nullptr)();  // once, if waited twice
  }

 private:
  MPI_Request request_;
  int rank_;
  double timeout_;
  const char* what_;
  std::function<void()> done_;
};

MPI_Datatype mpi_type(const Tensor& t, const char* what) {
  if (t.dtype() == DType::f32) return MPI_FLOAT;
  if (t.dtype() == DType::f64) return MPI_DOUBLE;
  fail("{}: {} tensors cannot be summed (f32 or f64)", what, dtype_name(t.dtype()));
}

void check_tensor(const Tensor& t, const char* what) {
  if (t.device().is_meta()) fail("{}: a meta tensor has no values to send", what);
  if (!t.is_contiguous()) fail("{}: tensor {} is not contiguous", what, shape_str(t.shape()));
  if (t.numel() > INT32_MAX / 8) fail("{}: {} elements are too many for one MPI call", what, t.numel());
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      std::atexit(finalize);
    }
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);  // errors become mp::Error, not an abort without a word
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    timeout_ = collective_timeout();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "MPI"; }

  // A tensor on a device (sim, CUDA) goes through a host buffer (parallel/host_staging.h).
  std::unique_ptr<Pending> all_reduce_sum(const Tensor& t) override {
    check_tensor(t, "all_reduce");
    const MPI_Datatype type = mpi_type(t, "all_reduce");
    Tensor host = staging_.take(t, true);
    MPI_Request request;
    check(MPI_Iallreduce(MPI_IN_PLACE, host.raw(), int(t.numel()), type, MPI_SUM, comm_, &request),
          "MPI_Iallreduce");
    count(t.nbytes());
    return std::make_unique<MpiPending>(request, rank_, timeout_, "an all-reduce",
                                        [this, host, t] { staging_.give_back(host, t, true); });
  }

  std::unique_ptr<Pending> all_gather(const Tensor& part, const Tensor& whole) override {
    check_tensor(part, "all_gather");
    check_tensor(whole, "all_gather");
    if (part.dtype() != whole.dtype() || whole.nbytes() != part.nbytes() * size_t(size_))
      fail("all_gather: {} from each of {} ranks into {}", shape_str(part.shape()), size_, shape_str(whole.shape()));
    Tensor part_host = staging_.take(part, true), whole_host = staging_.take(whole, false);
    MPI_Request request;
    check(MPI_Iallgather(part_host.raw(), int(part.nbytes()), MPI_BYTE, whole_host.raw(), int(part.nbytes()),
                         MPI_BYTE, comm_, &request),
          "MPI_Iallgather");
    count(part.nbytes());
    return std::make_unique<MpiPending>(request, rank_, timeout_, "an all-gather", [=, this] {
      staging_.give_back(part_host, part, false);
      staging_.give_back(whole_host, whole, true);
    });
  }

  void progress() override {
    int flag = 0;
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, MPI_STATUS_IGNORE);
  }

  // An error found by every rank at once (a bad file) would make every rank
  // call MPI_Abort together, and OpenMPI 4.1's mpirun can crash (SIGSEGV in
  // its help-message relay) on simultaneous aborts: the other ranks give
  // rank 0 two seconds to abort the job first, then abort it themselves.
  void abort_all(int code) override {
    aborting = true;  // MPI_Abort may exit() through the atexit handlers: no MPI_Finalize there
    std::fflush(stderr);
    if (rank_ != 0) std::this_thread::sleep_for(std::chrono::seconds(2));
    MPI_Abort(comm_, code);
  }

 private:
  static void finalize() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && !aborting) MPI_Finalize();
  }
  static inline bool aborting = false;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  double timeout_ = 600;
  HostStaging staging_;
};

}  // namespace

std::unique_ptr<Communicator> mpi_world() { return std::make_unique<MpiCommunicator>(); }

}  // namespace mp::parallel
