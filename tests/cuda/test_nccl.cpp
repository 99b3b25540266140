// The NCCL communicator on one rank, bootstrapped by the one-process
// communicator as MPI bootstraps it under mpirun: the sum over one rank is
// the tensor itself, an all-gather of one part is that part, both on the
// GPU, the bytes handed to collectives are counted, and a host tensor goes
// to the bootstrap communicator. Exits 77 (a skip for Meson) without a GPU.
#define DOCTEST_CONFIG_IMPLEMENT
#include "tests/cuda/gpu_main.h"

#include "parallel/nccl_communicator.h"
#include "engine/ops.h"

using namespace mp;

TEST_CASE("NCCL on one rank: all-reduce and all-gather of CUDA tensors") {
  std::unique_ptr<parallel::Communicator> single = parallel::single_process();
  std::unique_ptr<parallel::Communicator> comm = parallel::nccl(*single);
  CHECK(comm->rank() == 0);
  CHECK(comm->size() == 1);
  CHECK(comm->name() == "NCCL");

  const Tensor host = Tensor::from_vector(std::vector<float>{1.5f, -2.f, 3.25f, 0.f, 7.f}, {5});
  Tensor x = host.to(kCUDA);
  comm->all_reduce_sum(x)->wait();
  CHECK(ops::max_abs_diff(x.to(kCPU), host) == 0);

  Tensor whole = Tensor::zeros({5}, DType::f32, kCUDA);
  comm->all_gather(x, whole)->wait();
  CHECK(ops::max_abs_diff(whole.to(kCPU), host) == 0);
  CHECK(comm->bytes() == 2 * 5 * 4);

  // A host tensor (a loss) goes to the bootstrap communicator: one process here.
  Tensor loss = Tensor::from_vector(std::vector<float>{2.5f}, {1});
  comm->all_reduce_sum(loss)->wait();
  CHECK(loss.item() == 2.5);
  CHECK(comm->bytes() == 2 * 5 * 4);  // NCCL's count: device tensors only
}

int main(int argc, char** argv) { return test::run_on_gpu(argc, argv); }
