// IA3 (peft/ia3.h) against HF PEFT 0.21 on the tiny GPT-2 and OPT
// (reference/make_ia3_fixture.py, tests/fixtures/peft/<base>_ia3/): PEFT's
// adapter, with random vectors, loaded here gives PEFT's logits, loss and
// gradients; saved here and loaded back, the same logits and PEFT's tensors;
// merged, PEFT's merge_and_unload logits.
#include <doctest/doctest.h>

#include "autograd/variable.h"
#include "engine/error.h"
#include "peft_fixture.h"
#include "peft/config.h"
#include "peft/peft_model.h"

namespace mp::test {
namespace {

// Our parameter name of a saved key: "base_model.model.<layer>.ia3_l" -> "<...>.ia3.ia3_l.default".
std::string param_name(std::string key) {
  replace_all(key, ".ia3_l", ".ia3.ia3_l.default");
  return key;
}

}  // namespace

TEST_CASE("IA3: logits, loss and gradients equal HF PEFT's") {
  for (const std::string name : {"gpt2_ia3", "opt_ia3"}) {
    INFO(name);
    const PeftFixture f(name);
    auto pm = f.load(/*trainable=*/true);
    CHECK(pm->ia3_layers().size() == f.info["keys"].size());
    check_against_peft(*pm, f, param_name);
  }
}

TEST_CASE("IA3: saved here, PEFT's tensors and config; loaded back, the same logits and loss") {
  for (const std::string name : {"gpt2_ia3", "opt_ia3"}) {
    INFO(name);
    const PeftFixture f(name);
    auto pm = f.load();
    TempDir out("ia3");
    check_saved_as_peft(*pm, f, out.path.string());

    check_reloaded(f, out.path.string());
  }
}

TEST_CASE("IA3: merge equals PEFT's merge_and_unload; unmerge restores the base") {
  for (const std::string name : {"gpt2_ia3", "opt_ia3"}) {
    INFO(name);
    const PeftFixture f(name);
    auto pm = f.load();
    const Tensor ids = f.i32("input_ids");
    pm->merge_adapter();
    CHECK(pm->merged());
    CHECK(ops::max_abs_diff(pm->forward(ids).value(), f.f32("merged.logits")) < 1e-5);
    pm->unmerge_adapter();  // W / (l + 1e-8): within float rounding of the unmerged model
    CHECK(!pm->merged());
    CHECK(ops::max_abs_diff(pm->forward(ids).value(), f.f32("logits")) < 1e-4);

    std::shared_ptr<models::CausalLM> plain = pm->merge_and_unload();
    CHECK(pm->ia3_layers().empty());
    for (const auto& [pname, p] : plain->named_parameters()) CHECK_MESSAGE(pname.find("ia3") == std::string::npos, pname);
    const double err = ops::max_abs_diff(plain->forward(ids).value(), f.f32("merged.logits"));
    MESSAGE(name << ": merged logits max abs error " << err);
    CHECK(err < 1e-5);
  }
}

TEST_CASE("IA3: get_peft_model with PEFT's defaults starts as the base model") {
  const PeftFixture f("gpt2_ia3");
  const Tensor ids = f.i32("input_ids");
  auto base = f.base();
  base->eval();
  const Tensor base_logits = base->forward(ids).value();
  auto pm = peft::get_peft_model(base, peft::PeftConfig::ia3({}));
  pm->eval();
  const peft::Ia3Config& c = *pm->peft_config().as_ia3();
  CHECK(c.target_modules == std::vector<std::string>{"c_attn", "mlp.c_proj"});  // PEFT's gpt2 mapping
  CHECK(c.feedforward_modules == std::vector<std::string>{"mlp.c_proj"});
  CHECK(c.fan_in_fan_out);
  int feedforward = 0;
  for (const auto& [path, linear] : pm->ia3_layers())
    feedforward += static_cast<const peft::Ia3Linear&>(*linear->adapter()).is_feedforward();
  CHECK(pm->ia3_layers().size() == 4);
  CHECK(feedforward == 2);
  // 2 layers x (3C = 192 + 4C = 256) ones: a no-op.
  CHECK(pm->trainable_and_all_parameters().first == 2 * (192 + 256));
  CHECK(ops::max_abs_diff(pm->forward(ids).value(), base_logits) == 0.0);
}

TEST_CASE("IA3: bad input is an error naming the key") {
  auto base = [] { return models::load_pretrained(fixtures_dir() + "/gpt2_tiny"); };
  auto error_of = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string ff = error_of([&] {
    peft::get_peft_model(base(), peft::PeftConfig::ia3({.target_modules = {"c_attn"}, .feedforward_modules = {"c_fc"}}));
  });
  CHECK_MESSAGE(ff.find("feedforward_modules") != std::string::npos, ff);
  CHECK_MESSAGE(ff.find("c_fc") != std::string::npos, ff);
  const std::string target = error_of([&] {
    peft::get_peft_model(base(), peft::PeftConfig::ia3({.target_modules = {"nope"}}));
  });
  CHECK_MESSAGE(target.find("nope") != std::string::npos, target);
  const std::string mix = error_of([&] {
    auto pm = peft::get_peft_model(base(), peft::PeftConfig::ia3({}));
    pm->add_adapter("lora", peft::PeftConfig::lora({.r = 2, .target_modules = {"c_attn"}}));
  });
  CHECK_MESSAGE(mix.find("not a mix") != std::string::npos, mix);
  const std::string key = error_of([] {
    peft::parse_adapter_config(R"({"peft_type": "IA3", "feedforward_modules": 3})", "cfg.json");
  });
  CHECK_MESSAGE(key.find("feedforward_modules") != std::string::npos, key);
}

}  // namespace mp::test
