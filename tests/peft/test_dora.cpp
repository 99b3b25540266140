// DoRA (peft/dora.h) against HF PEFT 0.21 on the tiny GPT-2 (Conv1D layers)
// and OPT (reference/make_dora_fixture.py, tests/fixtures/peft/<base>_dora/):
// PEFT's adapter, with random lora_B and magnitudes, loaded here gives PEFT's
// logits, loss and gradients; saved here, PEFT's tensors and config; merged,
// PEFT's merge_and_unload logits. Dropout against PEFT's formula under one
// mask; bf16 and NF4 bases against an f32 base holding the same values.
#include <doctest/doctest.h>

#include <filesystem>

#include "autograd/variable.h"
#include "engine/error.h"
#include "models/load.h"
#include "models/nf4_base.h"
#include "nn/rng.h"
#include "nn/weight_dtype.h"
#include "peft/config.h"
#include "peft/dora.h"
#include "peft/peft_model.h"
#include "peft/weighted_adapter.h"
#include "peft_fixture.h"
#include "tests/support/error_of.h"
#include "tests/autograd/helpers.h"

namespace mp::test {
namespace {

using ag::Variable;

// Our parameter name of a saved key: "<layer>.lora_A.weight" -> "<layer>.lora.lora_A.default.weight",
// "<layer>.lora_magnitude_vector" -> "<layer>.lora.lora_magnitude_vector.default.weight".
std::string param_name(std::string key) {
  if (key.ends_with(".lora_magnitude_vector")) return key.substr(0, key.size() - 22) + ".lora.lora_magnitude_vector.default.weight";
  replace_all(key, ".lora_A.weight", ".lora.lora_A.default.weight");
  replace_all(key, ".lora_B.weight", ".lora.lora_B.default.weight");
  return key;
}

const char* const kFixtures[] = {"gpt2_dora", "opt_dora"};

}  // namespace

TEST_CASE("DoRA: logits, loss and every gradient equal HF PEFT's") {
  for (const std::string name : kFixtures) {
    INFO(name);
    const PeftFixture f(name);
    auto pm = f.load(/*trainable=*/true);
    CHECK(3 * pm->lora_layers().size() == f.info["keys"].size());  // A, B and the magnitude per layer
    check_against_peft(*pm, f, param_name);
  }
}

TEST_CASE("DoRA: saved here, PEFT's tensors and config; loaded back, the same logits and loss") {
  for (const std::string name : kFixtures) {
    INFO(name);
    const PeftFixture f(name);
    auto pm = f.load();
    TempDir out("dora");
    check_saved_as_peft(*pm, f, out.path.string());

    CHECK(check_reloaded(f, out.path.string())->peft_config().as_lora()->use_dora);
  }
}

TEST_CASE("DoRA: merge equals PEFT's merge_and_unload; unmerge restores the base") {
  for (const std::string name : kFixtures) {
    INFO(name);
    const PeftFixture f(name);
    auto pm = f.load();
    const Tensor ids = f.i32("input_ids");
    nn::Linear& layer = *pm->lora_layers().front().second;
    const Tensor w0 = layer.weight.value().clone(Tag::workspace);
    pm->merge_adapter();
    CHECK(ops::max_abs_diff(pm->forward(ids).value(), f.f32("merged.logits")) < 1e-5);
    pm->unmerge_adapter();
    CHECK(ops::max_abs_diff(layer.weight.value(), w0) < 1e-6);
    CHECK(ops::max_abs_diff(pm->forward(ids).value(), f.f32("logits")) < 1e-5);

    std::shared_ptr<models::CausalLM> plain = pm->merge_and_unload();
    for (const auto& [pname, p] : plain->named_parameters()) CHECK_MESSAGE(pname.find("lora") == std::string::npos, pname);
    const double err = ops::max_abs_diff(plain->forward(ids).value(), f.f32("merged.logits"));
    MESSAGE(name << ": merged logits max abs error " << err);
    CHECK(err < 1e-5);
  }
}

TEST_CASE("DoRA: a fresh adapter starts as the base model; its magnitude is each output channel's norm") {
  const PeftFixture f("gpt2_dora");
  const Tensor ids = f.i32("input_ids");
  auto base = f.base();
  base->eval();
  const Tensor base_logits = base->forward(ids).value();
  auto pm = peft::get_peft_model(base, peft::PeftConfig::lora({.r = 4, .target_modules = {"c_attn"}, .use_dora = true}));
  pm->eval();
  // 2 layers x (A 4 x 64 + B 192 x 4 + m 192).
  CHECK(pm->trainable_and_all_parameters().first == 2 * (4 * 64 + 192 * 4 + 192));
  CHECK(ops::max_abs_diff(pm->forward(ids).value(), base_logits) < 1e-5);
  // c_attn is a Conv1D (in, out): output channel j is column j.
  nn::Linear& layer = *pm->lora_layers().front().second;
  const auto& lora = static_cast<const peft::LoraLinear&>(*layer.adapter());
  std::vector<float> w = layer.weight.value().to_floats(), m = lora.weights("default").magnitude.value().to_floats();
  REQUIRE(m.size() == 192);
  for (size_t j : {size_t(0), size_t(100), size_t(191)}) {
    double sq = 0;
    for (size_t i = 0; i < 64; ++i) sq += double(w[i * 192 + j]) * w[i * 192 + j];
    CHECK(m[j] == doctest::Approx(std::sqrt(sq)).epsilon(1e-6));
  }
}

TEST_CASE("DoRA dropout: PEFT's formula under one mask; gradcheck with the mask held fixed") {
  // A small Conv1D with a bias, an adapter with non-zero B and a magnitude away from the norm.
  const float p = 0.4f;
  nn::Linear base(5, 4, true, nn::Layout::conv1d, 11);
  base.freeze("*");
  ops::fill(base.bias.value(), 0.3);  // HF's Conv1D starts it at 0
  peft::LoraWeights w{Variable(ag::test::rand64({3, 5}, 1).to(DType::f32)), Variable(ag::test::rand64({4, 3}, 2).to(DType::f32)),
                      3, 1.5f, p, Variable()};
  w.magnitude = Variable(ops::scale(peft::dora_weight_norm(base, w), 1.3f));
  const Variable x(ag::test::rand64({6, 5}, 3).to(DType::f32));  // (N, in)
  const uint64_t seed = 77;
  const Variable base_out = base.base_forward(x);
  const Tensor out = peft::dora_forward(x, base_out, base, w, p, seed, 0).value();

  // PEFT: base_out + (f - 1) * W0 d(x) + f * s * B A d(x), f = m / ||W0 + s B A||, d(x) from the same mask.
  const Tensor xd = ops::dropout(x.value(), p, seed, 0);
  const Tensor W = ops::add(base.weight.value().transpose(0, 1), ops::scale(ops::matmul(w.B.value(), w.A.value()), 1.5f));
  const Tensor norm = ops::unary(UnaryOp::sqrt, ops::sum(ops::mul(W, W), 1));  // (out) ||W0 + s B A||
  const Tensor f = ops::div(w.magnitude.value(), norm);
  const Tensor w0x = ops::matmul(xd, base.weight.value());                              // (N, out)
  const Tensor bax = ops::matmul(ops::matmul(xd, w.A.value(), false, true), w.B.value(), false, true);
  const Tensor f_minus_1 = ops::sub(f, Tensor::full({1}, 1.0));
  const Tensor expected = ops::add(ops::add(base_out.value(), ops::mul(w0x, f_minus_1)), ops::scale(ops::mul(bax, f), 1.5f));
  CHECK(ops::max_abs_diff(out, expected) < 1e-5);
  // The mask did act.
  CHECK(ops::max_abs_diff(out, peft::dora_forward(x, base_out, base, w, 0.f, 0, 0).value()) > 1e-2);

  // Gradients of x and m in f64. A and B stay constants here: the norm is
  // computed from them but detached, which finite differences cannot see.
  nn::WeightDTypeScope f64(DType::f64);
  nn::Linear base64(5, 4, false, nn::Layout::conv1d, 11);
  base64.freeze("*");
  const Variable a64(ag::test::rand64({3, 5}, 1)), b64(ag::test::rand64({4, 3}, 2));
  ag::test::check_gradients(
      [&](const std::vector<Variable>& v) {
        const peft::LoraWeights wv{a64, b64, 3, 1.5f, p, v[1]};
        return peft::dora_forward(v[0], base64.base_forward(v[0]), base64, wv, p, seed, 0);
      },
      {ag::test::rand64({6, 5}, 3), ag::test::rand64({4}, 4)});
}

TEST_CASE("DoRA on a bf16 and an NF4 base: the f32 base holding the same values gives the same logits and gradients") {
  for (const std::string name : kFixtures) {
    for (const bool nf4 : {false, true}) {
      INFO(name << (nf4 ? " nf4" : " bf16"));
      const PeftFixture f(name);
      std::shared_ptr<models::CausalLM> low = f.base(nf4 ? DType::f32 : DType::bf16), high = f.base();
      if (nf4) {
        low->freeze("*");
        models::quantize_base_nf4(*low);
        high->freeze("*");
        models::quantize_base_nf4(*high);
        models::dequantize_base_nf4(*high);  // f32, the NF4 values
      } else {
        auto lows = low->named_parameters();
        for (auto [pname, p] : high->named_parameters())
          for (const auto& [lname, l] : lows)
            if (lname == pname) p.value().copy_from(l.value());  // bf16 -> f32 is exact
      }
      auto pm_low = f.load(true, low), pm_high = f.load(true, high);
      const Tensor ids = f.i32("input_ids"), labels = f.i32("labels");
      Variable loss_low = pm_low->loss(ids, labels), loss_high = pm_high->loss(ids, labels);
      CHECK(std::abs(loss_low.item() - loss_high.item()) < 1e-5);
      CHECK(std::abs(loss_low.item() - f.f32("loss").item()) > 1e-6);  // the base's rounding did change the loss
      loss_low.backward();
      loss_high.backward();
      auto high_params = pm_high->named_parameters();
      for (const auto& [pname, p] : pm_low->named_parameters()) {
        if (!p.requires_grad()) continue;
        for (const auto& [hname, h] : high_params)
          if (hname == pname) CHECK_MESSAGE(rel_error(p.grad(), h.grad()) < 1e-4, pname);
      }
    }
  }
}

TEST_CASE("DoRA: bad input is an error naming the key") {
  const PeftFixture f("gpt2_dora");
  // A magnitude of another length than the layer's output features.
  TempDir dir("dora_bad");
  std::filesystem::copy_file(f.dir + "/adapter_config.json", dir.path / "adapter_config.json");
  nn::SafetensorsFile theirs = nn::SafetensorsFile::open(f.dir + "/adapter_model.safetensors");
  const std::string bad_key = "base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector";
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& key : theirs.names()) {
    Tensor t = theirs.load(key);
    tensors.emplace_back(key, key == bad_key ? t.narrow(0, 0, 100).contiguous() : t);
  }
  nn::save_safetensors((dir.path / "adapter_model.safetensors").string(), tensors, {{"format", "pt"}});
  const std::string shape = error_of([&] { peft::load_peft_model(f.base(), dir.path.string()); });
  CHECK_MESSAGE(shape.find(bad_key) != std::string::npos, shape);
  CHECK_MESSAGE(shape.find("(100)") != std::string::npos, shape);
  CHECK_MESSAGE(shape.find("(192)") != std::string::npos, shape);

  // A plain LoRA file loaded as DoRA misses the magnitudes, and the other way round.
  const std::string missing = error_of([&] {
    auto pm = peft::get_peft_model(f.base(), peft::PeftConfig::lora({.r = 4, .target_modules = {"c_attn", "c_proj"}}));
    pm->save_pretrained(dir.path.string());
    nlohmann::json cfg = read_json(dir.path.string() + "/adapter_config.json");
    cfg["use_dora"] = true;
    std::ofstream(dir.path / "adapter_config.json") << cfg.dump();
    peft::load_peft_model(f.base(), dir.path.string());
  });
  CHECK_MESSAGE(missing.find("missing 'base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector'") != std::string::npos, missing);

  const std::string type = error_of([] {
    peft::parse_adapter_config(R"({"peft_type": "LORA", "target_modules": ["c_attn"], "use_dora": "yes"})", "cfg.json");
  });
  CHECK_MESSAGE(type.find("use_dora") != std::string::npos, type);

  auto pm = f.load();
  const std::string mixed = error_of([&] { pm->forward(f.i32("input_ids"), nullptr, {"default", peft::PeftModel::kBaseName}); });
  CHECK_MESSAGE(mixed.find("DoRA") != std::string::npos, mixed);
  const std::string combine = error_of([&] { peft::add_weighted_adapter(*pm, {"default"}, {1.0}, "sum", peft::CombinationType::linear, 0); });
  CHECK_MESSAGE(combine.find("DoRA") != std::string::npos, combine);
}

}  // namespace mp::test
