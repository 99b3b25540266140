// The CUDA backend's public face: plain C++, no CUDA header, so that code
// outside cuda/ (tests, tools) can ask about the GPU.
//
// Linking mp_cuda (cuda_dep, a link_whole dependency) is enough to get the
// backend: a static registrar in cuda_backend.cpp gives engine/ a loader
// (mp::register_backend_loader), and the first mp::backend(kCUDA) or
// mp::has_backend(DeviceType::cuda) runs it, which makes the backend when a
// GPU is present. No CUDA call happens before main, nor at all in a program
// that never asks for the GPU. Without a GPU mp::backend(kCUDA) throws
// mp::Error as in a build without CUDA.
#pragma once
#include <cstddef>

namespace mp::cuda {

// Number of CUDA devices; 0 when there is none or the driver cannot be used
// (cudaGetDeviceCount's errors, e.g. "driver version is insufficient").
int device_count();

// Makes GPU `index` this process's (cudaSetDevice): the backend, made at the
// first use of the GPU, and NCCL use the current GPU, so a data-parallel rank
// calls it first (parallel::world). mp::Error when there is no such GPU.
void use_gpu(int index);

// TF32 tensor-core GEMMs for f32 matmuls: off by default so that results
// match the CPU backend to ~1e-6; on is ~8x faster on A100/H100. The
// environment variable MP_CUDA_TF32=1 turns it on when the backend is made.
void set_tf32(bool on);
bool tf32();

// The caching allocator: bytes held in its free lists, and giving them back
// to the driver.
size_t cached_bytes();
void empty_cache();

}  // namespace mp::cuda
