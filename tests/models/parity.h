// Parity with Hugging Face: shared checks for the fixture models made by
// reference/make_fixtures.py (tests/fixtures/<name>/: config.json,
// model.safetensors, reference.safetensors, reference.json). Each check loads
// the model fresh, runs what HF ran, and compares. The max errors are printed
// (MESSAGE) so a test log shows how close we are, not just that we pass.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <unistd.h>

#include "autograd/variable.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "models/generate.h"
#include "models/load.h"
#include "nn/adamw.h"
#include "nn/safetensors.h"
#include "tests/support/env.h"
#include "tests/support/error_of.h"
#include "tests/support/temp_dir.h"

namespace mp::test {

using ag::Variable;

// The model and the reference tensors on `device` (tests/cuda runs the same checks on the GPU).
struct Fixture {
  std::string dir;
  nlohmann::json info;      // reference.json
  nn::SafetensorsFile ref;  // reference.safetensors
  Device device;

  explicit Fixture(const std::string& name, Device d = kCPU)
      : dir(fixtures_dir() + "/" + name), info(read_json(dir + "/reference.json")),
        ref(nn::SafetensorsFile::open(dir + "/reference.safetensors")), device(d) {}

  Tensor tensor(const std::string& key) const {
    DType dt = ref.info(key).dtype == nn::StDType::I32 || ref.info(key).dtype == nn::StDType::I64 ? DType::i32
                                                                                                  : DType::f32;
    return ref.load(key, dt, Tag::workspace).to(device);
  }
  std::unique_ptr<models::CausalLM> model() const {
    std::unique_ptr<models::CausalLM> m = models::load_pretrained(dir);
    m->to(device);
    return m;
  }

  static nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "cannot open " << path);
    return nlohmann::json::parse(in);
  }
};

// max|a - b| / max(max|b|, tiny): a relative error that a near-zero element cannot blow up.
inline double relative_error(const Tensor& a, const Tensor& b) {
  std::vector<float> x = a.to_floats(), y = b.to_floats();
  REQUIRE(x.size() == y.size());
  double diff = 0, scale = 1e-12;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, std::abs(double(x[i]) - double(y[i])));
    scale = std::max(scale, std::abs(double(y[i])));
  }
  return diff / scale;
}

// Logits (B, T, V) and the loss of the fixed batch.
inline void check_logits_and_loss(const std::string& name, Device device = kCPU) {
  Fixture f(name, device);
  auto model = f.model();
  Tensor ids = f.tensor("input_ids");  // (B, T)
  Variable logits = model->forward(ids);  // (B, T, V)
  double logit_err = ops::max_abs_diff(logits.value(), f.tensor("logits"));
  Variable loss = model->loss(ids, f.tensor("labels"));
  double loss_err = std::abs(loss.item() - f.tensor("loss").item());
  MESSAGE(name << ": max |logits - HF| = " << logit_err << ", |loss - HF| = " << loss_err);
  CHECK(logit_err < 1e-4);
  CHECK(loss_err < 1e-5);
}

// The gradient of every parameter after one backward of the loss.
inline void check_gradients(const std::string& name, Device device = kCPU) {
  Fixture f(name, device);
  auto model = f.model();
  Variable loss = model->loss(f.tensor("input_ids"), f.tensor("labels"));
  loss.backward();
  double worst = 0;
  std::string worst_name;
  int checked = 0;
  for (const auto& [pname, p] : model->named_parameters()) {
    INFO(pname);
    REQUIRE(f.ref.contains("grad." + pname));
    REQUIRE(p.grad().defined());
    Tensor want = f.tensor("grad." + pname);
    ++checked;
    if (ops::max_abs_diff(want, Tensor::zeros(want.shape())) < 1e-6) {
      // A gradient that is zero in exact arithmetic (OPT's k_proj.bias: a bias
      // on every key shifts all of a query's scores alike, and softmax ignores
      // shifts) is float noise in both; a relative error means nothing there.
      CHECK(ops::max_abs_diff(p.grad(), want) < 1e-6);
      continue;
    }
    double err = relative_error(p.grad(), want);
    CHECK(err < 1e-4);
    if (err >= worst) worst = err, worst_name = pname;
  }
  // Every HF gradient has a parameter here: nothing was left out.
  std::vector<std::string> keys = f.ref.names();
  CHECK(checked == int(std::count_if(keys.begin(), keys.end(),
                                     [](const std::string& k) { return k.rfind("grad.", 0) == 0; })));
  MESSAGE(name << ": " << checked << " gradients, worst relative error " << worst << " (" << worst_name << ")");
}

// Loss before each of 10 AdamW steps on one batch, hyperparameters from reference.json.
inline void check_adamw(const std::string& name, Device device = kCPU) {
  Fixture f(name, device);
  auto model = f.model();
  const nlohmann::json& a = f.info["adamw"];
  nn::AdamWOptions o;
  o.lr = a["lr"];
  o.beta1 = a["betas"][0];
  o.beta2 = a["betas"][1];
  o.eps = a["eps"];
  o.weight_decay = a["weight_decay"];
  nn::AdamW opt(model->named_parameters(), o);
  Tensor ids = f.tensor("input_ids"), labels = f.tensor("labels");
  std::vector<float> want = f.tensor("adamw_losses").to_floats();
  REQUIRE(int(want.size()) == a["steps"].get<int>());
  double worst = 0;
  for (size_t step = 0; step < want.size(); ++step) {
    opt.zero_grad();
    Variable loss = model->loss(ids, labels);
    double err = std::abs(loss.item() - double(want[step]));
    INFO("step " << step);
    CHECK(err < 1e-4);
    worst = std::max(worst, err);
    loss.backward();
    opt.step();
  }
  MESSAGE(name << ": AdamW losses over " << want.size() << " steps, max |loss - HF| = " << worst);
}

// A padded batch: logits at real (mask = 1) positions.
inline void check_masked(const std::string& name, Device device = kCPU) {
  Fixture f(name, device);
  auto model = f.model();
  Tensor ids = f.tensor("masked_input_ids");        // (B, T)
  Tensor mask = f.tensor("masked_attention_mask");  // (B, T)
  Tensor mask_host = mask.to(kCPU);
  models::ForwardOptions opt;
  opt.attention_mask = &mask;
  Variable logits = model->forward(ids, opt);  // (B, T, V)
  Tensor want = f.tensor("masked_logits");
  double worst = 0;
  for (int64_t b = 0; b < ids.size(0); ++b)
    for (int64_t t = 0; t < ids.size(1); ++t) {
      if (mask_host.at({b, t}) == 0) continue;
      double err = ops::max_abs_diff(logits.value().select(0, b).select(0, t), want.select(0, b).select(0, t));
      INFO("row " << b << " position " << t);
      CHECK(err < 1e-4);
      worst = std::max(worst, err);
    }
  MESSAGE(name << ": masked batch, max |logits - HF| at real positions = " << worst);
}

// Greedy generation: HF's recorded ids, with and without the KV cache.
inline void check_generate(const std::string& name) {
  Fixture f(name);
  auto model = f.model();
  const nlohmann::json& g = f.info["generate"];
  std::vector<int32_t> prompt = g["prompt_ids"].get<std::vector<int32_t>>();
  std::vector<int32_t> want = g["output_ids"].get<std::vector<int32_t>>();
  models::GenerateOptions o;
  o.max_new_tokens = int(want.size() - prompt.size());
  o.eos_token_id = -1;  // HF ran with eos_token_id=None
  std::vector<int32_t> cached = models::generate(*model, prompt, o);
  o.use_cache = false;
  std::vector<int32_t> recomputed = models::generate(*model, prompt, o);
  CHECK(cached == want);
  CHECK(recomputed == want);
}

}  // namespace mp::test

namespace mp::test {

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace mp::test
