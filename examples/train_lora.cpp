// Train LoRA from C++: a tiny GPT-2 on Shakespeare, a callback printing the
// loss, and a check that it fell. Built by Meson and run by `meson test`.
#include <cstdio>

#include "train/data/paths.h"
#include "train/trainer.h"

using namespace mp;

struct PrintLoss : train::TrainerCallback {
  double first = -1, last = -1;
  void on_step_end(const train::StepRecord& r, int64_t tokens) override {
    if (first < 0) first = r.loss;
    last = r.loss;
    std::printf("step %lld  loss %.4f  (%lld tokens)\n", static_cast<long long>(r.step), r.loss,
                static_cast<long long>(tokens));
  }
};

int main() {
  train::TrainConfig config;  // the fields `minipeft train` sets from its flags
  config.model = "gpt2-tiny";
  config.method = "lora";
  config.lora_targets = {"c_attn", "c_proj"};
  config.lr = 1e-2;
  config.steps = 30;
  config.batch = 4;
  config.seq = 32;
  const auto tokenizer = models::Tokenizer::from_dir(train::default_tokenizer_dir());
  train::TrainedModel model = train::build_model(config, tokenizer);  // get_peft_model: base + LoRA
  auto data = train::load_training_data(train::data_dir() + "/tinyshakespeare/input.txt", 0.1, config.seq,
                                        /*packing=*/false, tokenizer);
  PrintLoss print;
  train::train(model, *data, config, {&print});
  std::printf("loss %.4f -> %.4f\n", print.first, print.last);
  return print.last < print.first ? 0 : 1;  // LoRA learned something
}
