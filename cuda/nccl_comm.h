// NCCL collectives on CUDA tensors: plain C++, no CUDA or NCCL header, so
// that parallel/nccl_communicator.h can offer them behind parallel::Communicator
// without knowing CUDA (and this folder knows nothing of parallel/).
//
// As llm.c does, the ranks are started by mpirun and bootstrapped over MPI:
// rank 0 makes an id (nccl_unique_id), every rank receives it and joins the
// communicator with its rank. Each rank uses its current GPU (chosen
// before with cuda::use_gpu, cuda/cuda_backend.h).
// Collectives go on the default stream, where the backend's kernels run, so
// they are ordered before every later kernel; the host waits on NcclWork.
#pragma once
#include <array>
#include <memory>

#include "engine/tensor.h"

struct ncclComm;  // NCCL's own type, declared here only by name

namespace mp::cuda {

using NcclId = std::array<char, 128>;  // NCCL_UNIQUE_ID_BYTES

// A fresh id for a new communicator (ncclGetUniqueId); mp::Error without a GPU.
NcclId nccl_unique_id();

// A collective queued on the default stream.
class NcclWork {
 public:
  virtual ~NcclWork() = default;
  // True once it has completed; mp::Error when NCCL reports an error (a peer gone).
  virtual bool done() = 0;
};

class NcclComm {
 public:
  NcclComm(const NcclId& id, int rank, int ranks);  // ncclCommInitRank: every rank calls it together
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const { return rank_; }
  int size() const { return ranks_; }
  // `t` (contiguous f32 or bf16 CUDA tensor) summed over the ranks, in place.
  std::unique_ptr<NcclWork> all_reduce_sum(const Tensor& t);
  // Every rank's `part` into `whole` (ranks x part's bytes), in rank order.
  std::unique_ptr<NcclWork> all_gather(const Tensor& part, const Tensor& whole);
  // Give up on the work in flight (a peer died): ncclCommAbort.
  void abort();

 private:
  ncclComm* comm_ = nullptr;
  int rank_, ranks_;
};

}  // namespace mp::cuda
