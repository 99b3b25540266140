// Where the CPU backend's host memory comes from: the BlockSource its
// BlockPool (engine/block_pool.h: the caching policy) allocates from.
#pragma once
#include "engine/block_pool.h"

namespace mp::cpu {

// Small blocks: 64-byte aligned (a cache line, an AVX-512 vector) from
// malloc. Large blocks: mapped straight from the OS (page aligned) and
// returned with munmap, so that a block the pool gives up leaves the
// process's resident memory at once (malloc would keep it in its heap, and
// raise its threshold for using mmap at all). From 2 MiB up they are 2 MiB
// aligned and marked MADV_HUGEPAGE, so where the kernel allows transparent
// huge pages they fault in 2 MiB at a time and use fewer TLB entries (the
// 154 MB embedding a GEMM streams through).
BlockSource host_memory();

}  // namespace mp::cpu
