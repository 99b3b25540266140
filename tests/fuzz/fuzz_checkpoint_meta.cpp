// libFuzzer target: a training checkpoint's metadata (train/checkpoint_meta.h),
// as JSON text and inside a safetensors header. Any input must give metadata
// that writes and reads back the same, or an mp::Error.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine/error.h"
#include "nn/safetensors.h"
#include "tests/fuzz/fuzz_support.h"
#include "train/checkpoint_meta.h"

using namespace mp;

namespace {

void round_trip(const train::CheckpointMeta& m) {
  const train::CheckpointMeta again = train::parse_checkpoint_meta(train::checkpoint_meta_json(m), "again");
  if (again.step != m.step || again.ranks != m.ranks || again.run != m.run || again.rng.seed != m.rng.seed ||
      again.rng.dropout_instances != m.rng.dropout_instances || m.step < 0 || m.ranks < 1 || !m.run.is_object())
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = fuzz::as_text(data, size);
  try {
    round_trip(train::parse_checkpoint_meta(text, "fuzz.safetensors"));
  } catch (const Error&) {
  }
  try {
    const nn::SafetensorsFile file = nn::SafetensorsFile::from_bytes(text, "fuzz.safetensors");
    round_trip(train::read_checkpoint_meta(file, "fuzz.safetensors"));
  } catch (const Error&) {
  }
  return 0;
}
