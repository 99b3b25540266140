#include "parallel/nccl_communicator.h"

#include <cstring>

#include "cuda/cuda_backend.h"
#include "cuda/nccl_comm.h"
#include "engine/backend.h"
#include "engine/error.h"

namespace mp::parallel {

namespace {

class NcclPending : public Pending {
 public:
  NcclPending(std::unique_ptr<cuda::NcclWork> work, cuda::NcclComm& comm, double timeout, const char* what)
      : work_(std::move(work)), comm_(comm), timeout_(timeout), what_(what) {}
  void wait() override {
    wait_for([this] { return work_->done(); }, comm_.rank(), what_, timeout_, [this] { comm_.abort(); });
  }

 private:
  std::unique_ptr<cuda::NcclWork> work_;
  cuda::NcclComm& comm_;
  double timeout_;
  const char* what_;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(const cuda::NcclId& id, int rank, int ranks, Communicator& bootstrap)
      : comm_(id, rank, ranks), bootstrap_(bootstrap), timeout_(collective_timeout()) {}
  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.size(); }
  std::string name() const override { return "NCCL"; }
  std::unique_ptr<Pending> all_reduce_sum(const Tensor& t) override {
    if (t.device().is_cpu()) return bootstrap_.all_reduce_sum(t);
    count(t.nbytes());
    return std::make_unique<NcclPending>(comm_.all_reduce_sum(t), comm_, timeout_, "an all-reduce");
  }
  std::unique_ptr<Pending> all_gather(const Tensor& part, const Tensor& whole) override {
    if (part.device().is_cpu()) return bootstrap_.all_gather(part, whole);
    count(part.nbytes());
    return std::make_unique<NcclPending>(comm_.all_gather(part, whole), comm_, timeout_, "an all-gather");
  }
  void abort_all(int code) override {
    comm_.abort();
    bootstrap_.abort(code);
  }

 private:
  cuda::NcclComm comm_;
  Communicator& bootstrap_;
  double timeout_;
};

}  // namespace

int visible_gpus() { return cuda::device_count(); }

std::unique_ptr<Communicator> nccl(Communicator& bootstrap, int gpu) {
  const Device device{DeviceType::cuda, gpu};
  if (visible_gpus() == 0) backend(device);  // no GPU: the missing backend's error, as without mpirun
  cuda::use_gpu(gpu);
  // Rank 0's id to everyone: each rank contributes its bytes (zeros but on
  // rank 0) and the all-gather hands every rank all of them.
  cuda::NcclId id{};
  if (bootstrap.rank() == 0) id = cuda::nccl_unique_id();
  const int64_t n = int64_t(id.size());
  Tensor bytes = Tensor::empty({n / 4}, DType::i32, kCPU, Tag::workspace);  // (128 bytes as 32 i32)
  std::memcpy(bytes.raw(), id.data(), id.size());
  Tensor all = Tensor::empty({n / 4 * bootstrap.size()}, DType::i32, kCPU, Tag::workspace);
  bootstrap.all_gather(bytes, all)->wait();
  std::memcpy(id.data(), all.raw(), id.size());  // rank 0's part
  return std::make_unique<NcclCommunicator>(id, bootstrap.rank(), bootstrap.size(), bootstrap);
}

}  // namespace mp::parallel
