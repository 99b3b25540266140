// Reproducible randomness from one global seed. Nothing here holds a random
// generator: the engine's Philox kernels turn (seed, element index) into a
// number, so all we need is a way to hand out distinct, reproducible seeds.
//
//   nn::manual_seed(42);           // like torch.manual_seed
//   Linear fc(768, 768);           // init seed = mix(42, "init", 0)
//   Dropout drop(0.1);             // mask seed per call = mix(42, instance, call counter)
//
// The state is three numbers (RngState); a checkpoint saves them so that a
// resumed run draws the same dropout masks as an uninterrupted one, and
// activation recompute can rewind them to replay a forward exactly.
#pragma once
#include <cstdint>
#include <optional>

namespace mp::nn {

struct RngState {
  uint64_t seed = 0;              // the global seed (manual_seed)
  uint64_t init_counter = 0;      // seeds handed out for parameter initialisation
  uint64_t dropout_counter = 0;   // dropout calls so far (all instances)
  uint64_t dropout_instances = 0; // Dropout modules constructed so far
};

// Set the global seed and restart every counter.
void manual_seed(uint64_t seed);
RngState rng_state();
void set_rng_state(const RngState& s);

// A fresh seed for initialising parameters: mix(seed, kInit, init_counter++).
uint64_t next_init_seed();
// The id of a new dropout instance (Dropout, LoraLinear, each attention), and
// the counter of the next dropout call (next_dropout_seed takes it).
uint64_t next_dropout_instance();
uint64_t next_dropout_call();
// The mask seed of one dropout call by `instance` (every dropout draws its
// seed here: Dropout, LoRA's, attention's): mix(base, instance,
// next_dropout_call()), base the global seed unless the instance has its own.
uint64_t next_dropout_seed(uint64_t instance, std::optional<uint64_t> base = std::nullopt);

// Data parallelism (train/trainer.h) splits a batch across processes: this one
// computes rows [first, first + count) of it. Every dropout then draws the
// mask those rows get in the whole batch, so that results do not depend on
// how the batch is split: element i of a tensor whose outermost dimension
// runs over the rows (row-major) draws stream element dropout_offset(numel) + i.
struct BatchRows {
  int64_t first = 0;
  int64_t count = 0;  // 0: this process computes the whole batch
};
void set_batch_rows(const BatchRows& rows);
BatchRows batch_rows();
// set_batch_rows(rows) for a scope, then back to the rows it replaced.
class BatchRowsScope {
 public:
  explicit BatchRowsScope(BatchRows rows) : saved_(batch_rows()) { set_batch_rows(rows); }
  ~BatchRowsScope() { set_batch_rows(saved_); }
  BatchRowsScope(const BatchRowsScope&) = delete;
  BatchRowsScope& operator=(const BatchRowsScope&) = delete;

 private:
  BatchRows saved_;
};
// first * (numel / count): 0 unless rows are set.
uint64_t dropout_offset(int64_t numel);

// Hash three numbers into a seed (splitmix64 rounds): nearby inputs give
// unrelated outputs.
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c);

}  // namespace mp::nn
