// LoRA dropout (on the LoRA path only, HF PEFT's lora_dropout): lora_down's
// hand-written backward under a fixed mask, train mode against eval mode,
// and the statistics of the mask on an HF PEFT adapter. Each test fails if
// the dropout does nothing.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "helpers.h"
#include "models/load.h"
#include "nn/rng.h"
#include "peft/lora.h"
#include "peft/peft_model.h"
#include "tests/autograd/helpers.h"

namespace mp::test {
namespace {

using ag::Variable;

TEST_CASE("lora dropout: gradcheck of the LoRA path with the mask held fixed") {
  Tensor x = ag::test::rand64({6, 5}, 1), a = ag::test::rand64({3, 5}, 2), b = ag::test::rand64({4, 3}, 3);
  nn::manual_seed(7);
  const uint64_t instance = nn::next_dropout_instance();
  const nn::RngState start = nn::rng_state();
  // scale * B A dropout(x), the mask seeded as LoraLinear seeds it. The RNG
  // is counter-based: rewinding it before each evaluation draws the same mask,
  // so the finite differences and the backward see one function.
  auto lora_path = [&](const std::vector<Variable>& v, float p) {
    nn::set_rng_state(start);
    const uint64_t seed = nn::mix_seed(nn::rng_state().seed, instance, nn::next_dropout_call());
    Variable h = peft::lora_down(v[0], v[1], p, seed);             // (6, 3)
    return ag::scale(ag::linear(h, v[2], Variable()), 2.f);        // (6, 4)
  };
  ag::test::check_gradients([&](const std::vector<Variable>& v) { return lora_path(v, 0.4f); }, {x, a, b});
  // The mask did act: the path differs from the one without dropout.
  const std::vector<Variable> v = {Variable(x), Variable(a), Variable(b)};
  CHECK(ops::max_abs_diff(lora_path(v, 0.4f).value(), lora_path(v, 0.f).value()) > 0.1);
}

TEST_CASE("lora dropout: train mode differs from eval mode, with fresh masks per call; p = 0 does not") {
  for (float p : {0.f, 0.3f}) {
    CAPTURE(p);
    auto pm = peft::get_peft_model(models::load_pretrained(fixtures_dir() + "/gpt2_tiny"),
                                   peft::PeftConfig::lora({.r = 4, .lora_alpha = 8, .lora_dropout = p,
                                                           .target_modules = {"c_attn"},
                                                           .init_lora_weights = peft::LoraInit::none}));
    nn::Linear& layer = *pm->lora_layers().front().second;
    Variable x(Tensor::full({8, layer.in_features()}, 0.5));  // (N, in)
    pm->eval();
    Tensor eval_out = layer.forward(x).value();
    pm->train();
    Tensor train_out = layer.forward(x).value(), again = layer.forward(x).value();
    if (p == 0.f) {
      CHECK(ops::max_abs_diff(train_out, eval_out) == 0.0);
    } else {
      CHECK(ops::max_abs_diff(train_out, eval_out) > 1e-3);
      CHECK(ops::max_abs_diff(train_out, again) > 1e-3);
    }
  }
}

// No HF PEFT fixture with lora_dropout > 0 exists (making one needs Python
// and torch, and torch's mask could not be made to agree with Philox's
// anyway): HF's gpt2_lora adapter is loaded with its config's lora_dropout
// set to 0.25, and the statistics of the mask are checked instead.
TEST_CASE("lora dropout: an HF PEFT adapter with lora_dropout 0.25 keeps ~75% of inputs, scaled by 1/0.75") {
  const double p = 0.25;
  const TempDir tmp("lora_dropout_adapter");
  const std::string dir = tmp.str();
  const std::string hf = fixtures_dir() + "/peft/gpt2_lora";
  nlohmann::json config = read_json(hf + "/adapter_config.json");
  config["lora_dropout"] = p;
  std::ofstream(dir + "/adapter_config.json") << config.dump(2);
  std::filesystem::copy_file(hf + "/adapter_model.safetensors", dir + "/adapter_model.safetensors");
  auto pm = peft::load_peft_model(models::load_pretrained(fixtures_dir() + "/gpt2_tiny"), dir);

  // Row n of x is one-hot at column n % in, so row n of the LoRA output sees
  // exactly one mask element: delta_train[n] = keep[n] / (1 - p) * delta_eval[n].
  nn::Linear& layer = *pm->lora_layers().front().second;
  const int64_t N = 20000, in = layer.in_features();
  std::vector<float> onehot(size_t(N * in), 0.f);
  for (int64_t n = 0; n < N; ++n) onehot[size_t(n * in + n % in)] = 1.f;
  Variable x(Tensor::from_vector(onehot, {N, in}));  // (N, in)
  pm->disable_adapters();
  std::vector<float> base = layer.forward(x).value().to_floats();  // (N, out)
  pm->enable_adapters();
  pm->eval();
  std::vector<float> eval_out = layer.forward(x).value().to_floats();
  pm->train();
  std::vector<float> train_out = layer.forward(x).value().to_floats();

  const int64_t out = layer.out_features();
  int64_t kept = 0;
  double worst_scale_error = 0, smallest_delta = 1e30;
  for (int64_t n = 0; n < N; ++n) {
    double dot = 0, norm2 = 0;  // ratio = <delta_train, delta_eval> / |delta_eval|^2
    for (int64_t o = 0; o < out; ++o) {
      const size_t i = size_t(n * out + o);
      dot += double(train_out[i] - base[i]) * double(eval_out[i] - base[i]);
      norm2 += double(eval_out[i] - base[i]) * double(eval_out[i] - base[i]);
    }
    smallest_delta = std::min(smallest_delta, norm2);
    const double ratio = dot / norm2;
    const bool keep = ratio > 0.5 / (1 - p);
    kept += keep;
    worst_scale_error = std::max(worst_scale_error, std::abs(ratio - (keep ? 1 / (1 - p) : 0.0)));
  }
  REQUIRE(smallest_delta > 1e-8);  // the adapter does something at every input column
  // kept ~ Binomial(N, 1 - p): within 5 standard deviations of N (1 - p).
  const double sigma = std::sqrt(N * p * (1 - p));
  MESSAGE("kept " << kept << " of " << N << " (expected " << N * (1 - p) << " +- " << sigma << ")");
  CHECK(std::abs(double(kept) - N * (1 - p)) < 5 * sigma);
  CHECK(worst_scale_error < 1e-4);  // each kept input scaled by exactly 1 / (1 - p), each dropped one by 0
}

}  // namespace
}  // namespace mp::test
