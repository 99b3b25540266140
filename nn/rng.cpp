#include "nn/rng.h"

#include "engine/error.h"

namespace mp::nn {

static RngState g_rng;

void manual_seed(uint64_t seed) { g_rng = RngState{seed, 0, 0, 0}; }
RngState rng_state() { return g_rng; }
void set_rng_state(const RngState& s) { g_rng = s; }

static uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c) { return splitmix64(splitmix64(splitmix64(a) ^ b) ^ c); }

// Distinct streams for the two uses, so init seeds never equal dropout seeds.
constexpr uint64_t kInitStream = 0x696e6974;  // "init"

uint64_t next_init_seed() { return mix_seed(g_rng.seed, kInitStream, g_rng.init_counter++); }
uint64_t next_dropout_instance() { return g_rng.dropout_instances++; }
uint64_t next_dropout_call() { return g_rng.dropout_counter++; }

static BatchRows g_rows;

void set_batch_rows(const BatchRows& rows) {
  if (rows.first < 0 || rows.count < 0) fail("batch rows [{}, +{}) are not a row range", rows.first, rows.count);
  g_rows = rows;
}
BatchRows batch_rows() { return g_rows; }

uint64_t dropout_offset(int64_t numel) {
  if (g_rows.count == 0 || g_rows.first == 0) return 0;
  if (numel % g_rows.count != 0)
    fail("dropout on {} elements, not a whole number of rows of a {}-row batch shard", numel, g_rows.count);
  return uint64_t(g_rows.first) * uint64_t(numel / g_rows.count);
}

uint64_t next_dropout_seed(uint64_t instance, std::optional<uint64_t> base) {
  return mix_seed(base ? *base : g_rng.seed, instance, next_dropout_call());
}

}  // namespace mp::nn
