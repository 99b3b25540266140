// The memory planner: what one training step of a run will need, per tag,
// before running it, for any model size.
//
// It is not a model of the engine but the engine itself: the run's model and
// adapter are built on the meta device (engine/meta/meta_backend.h: shapes
// and tags, no bytes, no weights read or made) and the real training step,
// train_step (forward, backward, clip, AdamW, with every option of the run:
// grad-accum, recompute, bf16 base, mixed precision, dropout), runs there
// twice: the second step, with AdamW's state alive throughout, is what every
// later step of a run repeats.
// Every allocation and free goes through the Ledger as on the CPU, so the
// meta account is the plan. measure_training_memory runs the same step on
// the CPU with real (random) weights; the tests hold the two equal per tag,
// at the peak of the sum, to the byte. The sum includes Tag::cached, the
// blocks the allocator keeps (engine/block_pool.h, run on meta too), so the
// peak is the allocator's footprint, not only the live bytes.
//
// The plan is made for the run's device: the CPU's (and sim's) allocations
// on kMeta, the CUDA backend's on kMetaCuda (its caching allocator, the
// workspace its kernels hold: engine/meta/cuda_plan.cpp), without a GPU.
//
// What the machine sees, the process's resident memory, is that footprint
// plus what every process of this program holds whatever the run: the
// program, its libraries, thread stacks, the GEMM library's state. That
// fixed part is measured once, in this process (fixed_process_bytes), and
// planned_rss_bytes is their sum, or the fixed part and the peak of building
// the model where that is higher (an NF4 base is quantized from f32). On a
// GPU, what must fit is the device memory the allocator reserves (its blocks,
// rounded, live and cached), planned as reserved_peak; the CUDA context and
// cuBLAS's own workspace come on top and are not planned.
#pragma once
#include <cstdint>
#include <string>

#include "engine/memory.h"
#include "models/nf4_base.h"
#include "models/tokenizer.h"
#include "train/trainer.h"

namespace mp::train {

struct MemoryPlan {
  Device device;            // the device planned for (the run's: cpu, sim or cuda)
  size_t peak_total = 0;    // the peak of the sum of all tags (cached included: the reserved bytes)
  size_t setup_peak = 0;    // the peak of the sum while the model was built
  size_t fixed_bytes = 0;   // the process's fixed part (fixed_process_bytes)
  size_t rss_bytes = 0;     // planned resident memory: fixed_bytes + max(peak_total, setup_peak)
  size_t reserved_peak = 0;        // the allocator's blocks (rounded; live and cached) at their peak in the steps
  size_t setup_reserved_peak = 0;  // the same while the model was built
  // What must fit the device, the figure --fit-in compares with a budget:
  // rss_bytes on the host, max(reserved_peak, setup_reserved_peak) on a GPU.
  size_t device_bytes() const;
  PeakMoment at_peak;       // bytes per tag at that moment, and where it happened
  TagBytes tag_peaks{};     // each tag's own peak (they need not coincide)
  int64_t trainable_params = 0, all_params = 0;
  models::BaseStorage storage;  // the base's parameter bytes by storage (nf4, bf16, f32)
  double step_seconds = 0;  // a measurement with timed steps: their mean wall time
};

// The plan for one step of `config` (a built-in shape or an HF folder, whose
// config.json alone is read). mp::Error for what train() would refuse: an
// unknown model or method, a sequence longer than the model's positions,
// LoRA targets that match nothing, ...
// With ranks > 1: rank 0 of a data-parallel run of that many ranks (its
// gradient buckets; with config.zero, its shard of the optimizer state).
MemoryPlan plan_training_memory(const TrainConfig& config, const models::Tokenizer& tokenizer, int ranks = 1);

// The same step run on config.device (random weights for a built-in name, the
// folder's weights otherwise), read from the Ledger. With timed_steps > 0,
// that many more steps follow the two and step_seconds is their mean (the
// account is read before them: the live bytes do not change after the
// second step, but what the allocator caches between steps may, a little).
MemoryPlan measure_training_memory(const TrainConfig& config, const models::Tokenizer& tokenizer,
                                   int timed_steps = 0);

// The resident bytes of this process once the engine is up and before any
// run: the CPU backend made, its threads started and the GEMM library loaded
// (one small f32 and one bf16 product). Measured at the first call, then
// remembered; call it before building a model.
size_t fixed_process_bytes();

// Where a run on `device` is planned: kMetaCuda for cuda:N, kMeta otherwise.
Device plan_device(Device device);

// The largest --batch (from 1 up) whose plan's device_bytes() fit in `budget` bytes;
// 0 when even one sequence does not fit.
int64_t largest_fitting_batch(TrainConfig config, const models::Tokenizer& tokenizer, size_t budget, int ranks = 1);

}  // namespace mp::train
