// nccl() and visible_gpus() in a build without CUDA's NCCL.
#include "parallel/nccl_communicator.h"
#include "engine/backend.h"
#include "engine/error.h"

namespace mp::parallel {

std::unique_ptr<Communicator> nccl(Communicator&, int gpu) {
  const Device device{DeviceType::cuda, gpu};
  backend(device);  // without CUDA: the missing backend's error, as without mpirun
  fail("data parallel on {}: this minipeft was built with CUDA but without NCCL (the toolkit's libnccl), which "
       "the ranks' GPUs need",
       device.str());
}

int visible_gpus() { return 0; }

}  // namespace mp::parallel
