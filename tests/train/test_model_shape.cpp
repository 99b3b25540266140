// --layers/--width/--heads (train/model_shape.h): `train` starts from a random
// model of the chosen shape and saves that shape; bad shapes are errors.
#include <doctest/doctest.h>

#include "engine/error.h"
#include "models/load.h"
#include "tests/support/minipeft.h"
#include "train/model_shape.h"
#include "train/data/paths.h"
#include "train/trainer.h"

using namespace mp;

TEST_CASE("train --layers/--width/--heads: a random model of that shape, trained and saved") {
  test::TempDir d("model_shape");
  train::TrainConfig c;
  c.model = "gpt2-tiny";  // 2 layers, width 64, 4 heads
  c.shape = {3, 32, 2};
  c.data = test::data_path("legal/licenses.txt");
  c.batch = 1;
  c.seq = 8;
  c.steps = 1;
  c.out_dir = d.path.string();
  c.progress = false;
  train::train(c, models::Tokenizer::from_dir(train::default_tokenizer_dir()));
  const models::ModelConfig saved = models::config_of(train::final_model_dir(c.out_dir));
  CHECK(saved.num_layers == 3);
  CHECK(saved.hidden_size == 32);
  CHECK(saved.ffn_dim == 128);
  CHECK(saved.num_heads == 2);
  CHECK(saved.vocab_size == 50257);  // the rest is gpt2-tiny's
  CHECK(saved.max_positions == 256);
}

TEST_CASE("a shape that cannot be built is an error naming the option") {
  auto error_of = [](const std::string& model, train::ModelShape s) {
    try {
      train::shaped_config(model, s);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error_of("gpt2-tiny", {0, 100, 3}).find("--width 100 is not divisible by --heads 3") != std::string::npos);
  CHECK(error_of("gpt2-tiny", {-1, 0, 0}).find(">= 0") != std::string::npos);
  CHECK(error_of("gpt2-tiny", {1000, 0, 0}).find("absurdly large") != std::string::npos);
  CHECK(error_of(test::data_path("legal"), {2, 0, 0}).find("not one") != std::string::npos);  // a folder keeps its shape
  CHECK(train::shaped_config("gpt2-tiny", {}).num_layers == 2);                          // nothing changed
  train::ModelShape small_vocab;  // train --tokenizer: the tokenizer's vocabulary and end-of-text id
  small_vocab.vocab = 300;
  small_vocab.eos_token = 299;
  const models::ModelConfig c = train::shaped_config("gpt2-tiny", small_vocab);
  CHECK(c.vocab_size == 300);
  CHECK(c.eos_token_id == 299);
  CHECK(c.bos_token_id == 299);
  CHECK(c.num_layers == 2);  // the rest is gpt2-tiny's
  small_vocab.eos_token = 300;
  CHECK(error_of("gpt2-tiny", small_vocab).find("end-of-text id 300 outside a vocabulary of 300") != std::string::npos);
}
