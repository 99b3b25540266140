// The trainer tests' run: gpt2-tiny on the licences, a few short steps, with
// dropout (model and LoRA) so that replayed masks are part of what is checked.
#pragma once
#include <string>

#include "tests/support/minipeft.h"
#include "train/trainer.h"

namespace mp::test {

inline train::TrainConfig small_run(const std::string& out, const std::string& method) {
  train::TrainConfig c;
  c.model = "gpt2-tiny";
  c.method = method;
  c.data = data_path("legal/licenses.txt");
  c.batch = 2;
  c.seq = 32;
  c.steps = 6;
  c.warmup = 2;
  c.lora_dropout = 0.1f;  // dropout masks must be replayed exactly after a resume
  c.num_virtual_tokens = 4;
  c.out_dir = out;
  c.progress = false;
  return c;
}

}  // namespace mp::test
