#include "cuda/nccl_comm.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>

#include "cuda/cuda_backend.h"
#include "engine/error.h"

namespace mp::cuda {

static_assert(sizeof(ncclUniqueId) == sizeof(NcclId), "NCCL_UNIQUE_ID_BYTES changed");

namespace {

void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess && r != ncclInProgress) fail("{}: {}", what, ncclGetErrorString(r));
}

void check_cuda_call(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("{}: {}", what, cudaGetErrorString(e));
}

void check_tensor(const Tensor& t, const char* what) {
  if (t.device().type != DeviceType::cuda) fail("{}: NCCL takes CUDA tensors, not {}", what, t.device().str());
  if (!t.is_contiguous()) fail("{}: tensor {} is not contiguous", what, shape_str(t.shape()));
}

// An event recorded after the collective: done when the stream has passed it.
class EventWork : public NcclWork {
 public:
  explicit EventWork(ncclComm* comm) : comm_(comm) {
    check_cuda_call(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda_call(cudaEventRecord(event_, 0), "cudaEventRecord");
  }
  ~EventWork() override { cudaEventDestroy(event_); }
  bool done() override {
    ncclResult_t async = ncclSuccess;
    check_nccl(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
    check_nccl(async, "NCCL");
    const cudaError_t e = cudaEventQuery(event_);
    if (e == cudaErrorNotReady) return false;
    check_cuda_call(e, "cudaEventQuery");
    return true;
  }

 private:
  ncclComm* comm_;
  cudaEvent_t event_{};
};

}  // namespace

NcclId nccl_unique_id() {
  if (device_count() <= 0) fail("NCCL needs a CUDA device; none is usable here");
  ncclUniqueId id;
  check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  NcclId out;
  std::memcpy(out.data(), &id, sizeof id);
  return out;
}

NcclComm::NcclComm(const NcclId& id, int rank, int ranks) : rank_(rank), ranks_(ranks) {
  const int devices = device_count();
  if (devices <= 0) fail("NCCL needs a CUDA device; none is usable here");
  if (rank < 0 || rank >= ranks) fail("NCCL: rank {} of {}", rank, ranks);
  ncclUniqueId nid;
  std::memcpy(&nid, id.data(), sizeof nid);
  check_nccl(ncclCommInitRank(&comm_, ranks, nid, rank), "ncclCommInitRank");
}

NcclComm::~NcclComm() {
  if (comm_) ncclCommDestroy(comm_);
}

std::unique_ptr<NcclWork> NcclComm::all_reduce_sum(const Tensor& t) {
  check_tensor(t, "all_reduce");
  ncclDataType_t type = ncclFloat32;
  if (t.dtype() == DType::bf16) type = ncclBfloat16;
  else if (t.dtype() == DType::f64) type = ncclFloat64;
  else if (t.dtype() != DType::f32) fail("all_reduce: {} tensors cannot be summed", dtype_name(t.dtype()));
  check_nccl(ncclAllReduce(t.raw(), t.raw(), size_t(t.numel()), type, ncclSum, comm_, 0), "ncclAllReduce");
  return std::make_unique<EventWork>(comm_);
}

std::unique_ptr<NcclWork> NcclComm::all_gather(const Tensor& part, const Tensor& whole) {
  check_tensor(part, "all_gather");
  check_tensor(whole, "all_gather");
  if (part.dtype() != whole.dtype() || whole.nbytes() != part.nbytes() * size_t(ranks_))
    fail("all_gather: {} from each of {} ranks into {}", shape_str(part.shape()), ranks_, shape_str(whole.shape()));
  check_nccl(ncclAllGather(part.raw(), whole.raw(), part.nbytes(), ncclUint8, comm_, 0), "ncclAllGather");
  return std::make_unique<EventWork>(comm_);
}

void NcclComm::abort() {
  if (comm_) ncclCommAbort(comm_);
  comm_ = nullptr;
}

}  // namespace mp::cuda
