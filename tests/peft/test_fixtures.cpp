// Parity with HF PEFT 0.13 on the tiny GPT-2 and OPT models, one fixture per
// case (reference/make_fixtures.py, tests/fixtures/peft/<case>/):
// trainable line, logits, loss, adapter gradients, 10 AdamW losses, the saved
// adapter's keys/shapes/config, and loading HF's saved adapter.
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "autograd/variable.h"
#include "helpers.h"
#include "models/load.h"
#include "models/tokenizer.h"
#include "nn/adamw.h"
#include "peft/peft_model.h"

namespace mp::test {
namespace {

using ag::Variable;

struct Case {
  std::string name, dir;
  nlohmann::json info;
  nn::SafetensorsFile ref;
  explicit Case(const std::string& n)
      : name(n), dir(fixtures_dir() + "/peft/" + n), info(read_json(dir + "/reference.json")),
        ref(nn::SafetensorsFile::open(dir + "/reference.safetensors")) {}
  Tensor f32(const std::string& key) const { return ref.load(key, DType::f32, Tag::workspace); }
  Tensor i32(const std::string& key) const { return ref.load(key, DType::i32, Tag::workspace); }
  std::shared_ptr<models::CausalLM> base() const {
    return models::load_pretrained(fixtures_dir() + "/" + info["base_model_dir"].get<std::string>());
  }
};

const char* const kCases[] = {"gpt2_lora",          "gpt2_lora_rslora_loraonly", "opt_lora",
                              "gpt2_prompt_random", "gpt2_prompt_text",          "opt_prompt_random",
                              "gpt2_prefix",        "gpt2_prefix_proj",          "opt_prefix"};

// The PeftModel HF PEFT trained: its config, then its initial parameter values.
std::shared_ptr<peft::PeftModel> make_model(const Case& c) {
  peft::PeftConfig config = peft::load_adapter_config(c.dir + "/adapter_config.json");
  config.inference_mode = false;  // get_peft_model as for training
  models::Tokenizer tok = models::Tokenizer::from_dir(data_dir() + "/gpt2-tokenizer");
  auto pm = peft::get_peft_model(c.base(), config, "default", &tok);
  std::map<std::string, Variable> ours;
  for (auto& [name, p] : pm->named_parameters()) ours[name] = p;
  for (const auto& [hf, shape] : c.info["trainable_parameters"].items()) {
    INFO(c.name << ": " << hf);
    REQUIRE(ours.count(our_name(hf)));
    Variable p = ours.at(our_name(hf));
    CHECK(p.requires_grad());
    REQUIRE(p.shape() == shape.get<Shape>());
    if (c.name == "gpt2_prompt_text") {  // our TEXT init must be PEFT's
      CHECK(ops::max_abs_diff(p.value(), c.f32("param." + hf)) == 0.0);
    }
    c.ref.load_into("param." + hf, p.value());
  }
  return pm;
}

TEST_CASE("peft fixtures: trainable line, logits, loss, gradients as HF PEFT") {
  for (const char* name : kCases) {
    SUBCASE(name) {
      Case c(name);
      auto pm = make_model(c);
      CHECK(pm->trainable_parameters_line() == c.info["trainable_line"].get<std::string>());
      // exactly HF's trainable set
      int64_t trainable = 0;
      for (auto& [n, p] : pm->named_parameters()) trainable += p.requires_grad();
      CHECK(trainable == int64_t(c.info["trainable_parameters"].size()));

      pm->eval();
      Tensor ids = c.i32("input_ids"), labels = c.i32("labels");
      Variable logits = pm->forward(ids);
      REQUIRE(logits.shape() == c.info["logits_shape"].get<Shape>());
      const double logit_err = ops::max_abs_diff(logits.value(), c.f32("logits"));
      MESSAGE(std::string(name) << ": logits max abs error " << logit_err);
      CHECK(logit_err < 1e-5);

      Variable loss = pm->loss(ids, labels);
      CHECK(std::abs(loss.item() - c.f32("loss").item()) < 1e-5);
      loss.backward();
      double worst = 0;
      for (const auto& [hf, shape] : c.info["trainable_parameters"].items()) {
        Variable p;
        for (auto& [n, q] : pm->named_parameters())
          if (n == our_name(hf)) p = q;
        REQUIRE(p.grad().defined());
        const double err = rel_error(p.grad(), c.f32("grad." + hf));
        worst = std::max(worst, err);
        CHECK_MESSAGE(err < 1e-4, hf << " gradient relative error " << err);
      }
      MESSAGE(std::string(name) << ": gradients max relative error " << worst);
    }
  }
}

TEST_CASE("peft fixtures: 10 AdamW steps give HF's losses") {
  for (const char* name : kCases) {
    SUBCASE(name) {
      Case c(name);
      auto pm = make_model(c);
      pm->eval();  // dropout off, as the fixture
      const nlohmann::json& a = c.info["adamw"];
      nn::AdamW opt(pm->named_parameters(), {.lr = a["lr"], .beta1 = a["betas"][0], .beta2 = a["betas"][1],
                                             .eps = a["eps"], .weight_decay = a["weight_decay"]});
      Tensor ids = c.i32("input_ids"), labels = c.i32("labels");
      std::vector<float> want = c.f32("adamw_losses").to_floats();
      double worst = 0;
      for (size_t step = 0; step < want.size(); ++step) {
        Variable loss = pm->loss(ids, labels);
        worst = std::max(worst, std::abs(loss.item() - want[step]));
        loss.backward();
        opt.step();
        opt.zero_grad();
      }
      MESSAGE(std::string(name) << ": AdamW losses max abs error " << worst);
      CHECK(worst < 1e-4);
    }
  }
}

TEST_CASE("peft fixtures: our saved adapter is HF's (keys, shapes, config) and HF's loads here") {
  for (const char* name : kCases) {
    SUBCASE(name) {
      Case c(name);
      auto pm = make_model(c);
      const TempDir tmp(std::string("save_") + name);
      const std::string out = tmp.str();
      pm->save_pretrained(out);

      // the same config fields and values as HF's file
      nlohmann::json ours = read_json(out + "/adapter_config.json"), hf = read_json(c.dir + "/adapter_config.json");
      CHECK(ours.dump() == hf.dump());
      // the same tensor names and shapes
      auto ours_st = nn::SafetensorsFile::open(out + "/adapter_model.safetensors");
      auto hf_st = nn::SafetensorsFile::open(c.dir + "/adapter_model.safetensors");
      REQUIRE(ours_st.names() == hf_st.names());
      for (const std::string& key : hf_st.names()) {
        CHECK(ours_st.info(key).shape == hf_st.info(key).shape);
        CHECK(ours_st.info(key).dtype == hf_st.info(key).dtype);
        // and, at the fixture's initial values, the same numbers
        CHECK(ops::max_abs_diff(ours_st.load(key), hf_st.load(key)) < 1e-6);
      }

      // HF's saved adapter, loaded into a fresh base, reproduces HF's logits
      auto loaded = peft::load_peft_model(c.base(), c.dir);
      loaded->eval();
      const double err = ops::max_abs_diff(loaded->forward(c.i32("input_ids")).value(), c.f32("logits"));
      MESSAGE(std::string(name) << ": HF adapter loaded here, logits max abs error " << err);
      CHECK(err < 1e-5);
      // and so does ours
      auto reloaded = peft::load_peft_model(c.base(), out);
      reloaded->eval();
      CHECK(ops::max_abs_diff(reloaded->forward(c.i32("input_ids")).value(), c.f32("logits")) < 1e-5);
    }
  }
}

}  // namespace
}  // namespace mp::test
