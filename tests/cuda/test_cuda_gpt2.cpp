// GPT-2 on the GPU against Hugging Face: the parity checks of tests/models
// (logits and loss, every parameter gradient, 10 AdamW steps, a padded batch)
// with the model and the inputs on CUDA, TF32 off. Exits 77 without a GPU.
#define DOCTEST_CONFIG_IMPLEMENT
#include "tests/cuda/gpu_main.h"
#include "tests/models/parity.h"

using namespace mp;

TEST_CASE("gpt2_tiny on cuda: logits and loss match HF") { test::check_logits_and_loss("gpt2_tiny", kCUDA); }
TEST_CASE("gpt2_tiny on cuda: every parameter gradient matches HF") { test::check_gradients("gpt2_tiny", kCUDA); }
TEST_CASE("gpt2_tiny on cuda: 10 AdamW steps give HF's losses") { test::check_adamw("gpt2_tiny", kCUDA); }
TEST_CASE("gpt2_tiny on cuda: padded batch logits match HF") { test::check_masked("gpt2_tiny", kCUDA); }

int main(int argc, char** argv) { return test::run_on_gpu(argc, argv); }
