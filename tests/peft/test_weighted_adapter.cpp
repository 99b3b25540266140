// LoRA composition (peft/weighted_adapter.h) against HF PEFT 0.21's
// add_weighted_adapter on three fixture adapters of the tiny GPT-2 and OPT
// (reference/make_combine_fixture.py, tests/fixtures/peft/combine_<base>/):
// the new config, A and B (linear, cat) or B A (svd, whose factors are
// defined up to sign), and the saved adapter's logits after loading it back.
#include <doctest/doctest.h>

#include "helpers.h"
#include "models/load.h"
#include "peft/weighted_adapter.h"

namespace mp::test {
namespace {

struct Fixture {
  std::string dir;
  nlohmann::json info;
  nn::SafetensorsFile ref;
  explicit Fixture(const std::string& base)
      : dir(fixtures_dir() + "/peft/combine_" + base), info(read_json(dir + "/reference.json")),
        ref(nn::SafetensorsFile::open(dir + "/reference.safetensors")) {}
  std::shared_ptr<models::CausalLM> base() const {
    return models::load_pretrained(fixtures_dir() + "/" + info["base"].get<std::string>());
  }
  // The base with the fixture's adapters a, b, c loaded under their names.
  std::shared_ptr<peft::PeftModel> with_adapters() const {
    auto pm = peft::load_peft_model(base(), dir + "/a", "a");
    pm->load_adapter(dir + "/b", "b");
    pm->load_adapter(dir + "/c", "c");
    return pm;
  }
  Tensor f32(const std::string& key) const { return ref.load(key, DType::f32, Tag::workspace); }
};

// HF's saved key of one factor -> the other: "...lora_A.weight" <-> "...lora_B.weight".
std::string other_factor(std::string key, const std::string& from, const std::string& to) {
  replace_all(key, from, to);
  return key;
}

void check_case(const Fixture& f, const std::string& name, const nlohmann::json& c) {
  INFO(f.info["base"].get<std::string>() << " " << name);
  auto pm = f.with_adapters();
  const peft::CombinationType type = peft::parse_combination_type(c["combination_type"].get<std::string>());
  const int svd_rank = c["svd_rank"].is_null() ? 0 : c["svd_rank"].get<int>();
  peft::add_weighted_adapter(*pm, c["adapters"].get<std::vector<std::string>>(), c["weights"].get<std::vector<double>>(),
                             name, type, svd_rank);
  const peft::LoraConfig& lora = *pm->peft_config(name).as_lora();
  CHECK(lora.r == c["r"].get<int>());
  CHECK(lora.lora_alpha == c["lora_alpha"].get<float>());
  CHECK(lora.target_modules == c["target_modules"].get<std::vector<std::string>>());

  int factors = 0;
  for (const auto& [key, ours] : pm->adapter_state_dict(name)) {
    INFO(key);
    REQUIRE(f.ref.contains(name + "." + key));
    const Tensor theirs = f.f32(name + "." + key);
    REQUIRE(ours.shape() == theirs.shape());
    ++factors;
    if (type != peft::CombinationType::svd) {
      CHECK(ops::max_abs_diff(ours, theirs) < 1e-6);
    } else if (key.find(".lora_A.") != std::string::npos) {  // B A (out, in), the sign-free product
      const std::string b_key = other_factor(key, ".lora_A.", ".lora_B.");
      Tensor our_b;
      for (const auto& [k, t] : pm->adapter_state_dict(name))
        if (k == b_key) our_b = t;
      const Tensor delta = ops::matmul(f.f32(name + "." + b_key), theirs);
      const double err = rel_error(ops::matmul(our_b, ours), delta);
      MESSAGE(name << " " << key << ": B A relative error " << err);
      CHECK(err < 1e-5);
    }
  }
  const std::vector<std::string> keys = f.ref.names();
  CHECK(factors == int(std::count_if(keys.begin(), keys.end(), [&](const std::string& k) {
          return k.rfind(name + ".base_model.", 0) == 0;
        })));

  // Saved as a PEFT adapter, loaded back into a fresh base: PEFT's logits.
  TempDir out("combine");
  pm->save_pretrained(out.path.string(), name);
  auto loaded = peft::load_peft_model(f.base(), out.path.string());
  loaded->eval();
  const double err = ops::max_abs_diff(loaded->forward(f.ref.load("input_ids", DType::i32, Tag::workspace)).value(),
                                       f.f32(name + ".logits"));
  MESSAGE(name << ": logits max abs error " << err);
  CHECK(err < 1e-5);
}

TEST_CASE("add_weighted_adapter: linear, cat and svd as HF PEFT 0.21") {
  for (const char* base : {"gpt2_tiny", "opt_tiny"}) {
    const Fixture f(base);
    for (const auto& [name, c] : f.info["cases"].items()) check_case(f, name, c);
  }
}

TEST_CASE("add_weighted_adapter: bad input is an error naming it, nothing added") {
  const Fixture f("gpt2_tiny");
  auto pm = f.with_adapters();
  const auto fails = [&](const std::vector<std::string>& adapters, const std::vector<double>& weights,
                         const std::string& name, peft::CombinationType t, int svd_rank, const std::string& message) {
    INFO(message);
    CHECK_THROWS_WITH(peft::add_weighted_adapter(*pm, adapters, weights, name, t, svd_rank),
                      doctest::Contains(message.c_str()));
    CHECK(pm->adapter_names() == std::vector<std::string>{"a", "b", "c"});
  };
  using peft::CombinationType;
  fails({"a", "b"}, {1.0}, "n", CombinationType::cat, 0, "1 weights for 2 adapters");
  fails({"a", "c"}, {1.0, 1.0}, "n", CombinationType::linear, 0, "'c' has r 2");
  fails({"a", "z"}, {1.0, 1.0}, "n", CombinationType::cat, 0, "no adapter 'z'");
  fails({"a", "a"}, {1.0, 1.0}, "n", CombinationType::cat, 0, "'a' is given twice");
  fails({"a", "b"}, {1.0, 1.0}, "b", CombinationType::cat, 0, "'b' already exists");
  fails({"a", "c"}, {1.0, 1.0}, "n", CombinationType::svd, 7, "svd_rank 7 is above the inputs' total rank 6");
  fails({"a", "c"}, {1.0, 1.0}, "n", CombinationType::cat, 3, "svd_rank 3 is only for the svd type");
  fails({}, {}, "n", CombinationType::cat, 0, "no adapters");
  CHECK_THROWS_WITH(peft::parse_combination_type("ties"), doctest::Contains("unknown combination type 'ties'"));
}

}  // namespace
}  // namespace mp::test
