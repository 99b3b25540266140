// modules_to_save (peft/modules_to_save.h) against HF PEFT 0.21 on the tiny
// GPT-2 and OPT (reference/make_modules_to_save_fixture.py,
// tests/fixtures/peft/<base>_lora_save/): LoRA plus the final layer norm and
// each layer's feed-forward output Linear trained in full. PEFT's adapter,
// with random lora_B and moved saved modules, loaded here gives PEFT's logits,
// loss and gradients; saved here, PEFT's tensors and config; merged, PEFT's
// merge_and_unload logits. Trained here, saved and reloaded on a fresh base,
// the same loss. Bad input: errors naming the name, key and shapes.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "autograd/variable.h"
#include "engine/error.h"
#include "nn/safetensors.h"
#include "nn/sgd.h"
#include "peft/config.h"
#include "peft/peft_model.h"
#include "peft_fixture.h"
#include "tests/support/error_of.h"

namespace mp::test {
namespace {

using ag::Variable;

// Our parameter name of a saved key: LoRA's "<layer>.lora_A.weight" ->
// "<layer>.lora.lora_A.default.weight"; a saved module's parameter is the base's own, under its key.
std::string param_name(std::string key) {
  replace_all(key, ".lora_A.weight", ".lora.lora_A.default.weight");
  replace_all(key, ".lora_B.weight", ".lora.lora_B.default.weight");
  return key;
}

const char* const kFixtures[] = {"gpt2_lora_save", "opt_lora_save"};

peft::PeftConfig lora_saving(std::vector<std::string> modules_to_save) {
  return peft::PeftConfig::lora({.r = 4, .target_modules = {"c_attn"}, .modules_to_save = std::move(modules_to_save)});
}

// The fixture's adapter files in a new folder, `key`'s tensor replaced by replace(tensor).
template <class Replace>
std::string copy_adapter(const PeftFixture& f, const TempDir& dir, const std::string& key, Replace replace) {
  std::filesystem::copy_file(f.dir + "/adapter_config.json", dir.path / "adapter_config.json");
  nn::SafetensorsFile theirs = nn::SafetensorsFile::open(f.dir + "/adapter_model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& k : theirs.names()) tensors.emplace_back(k, k == key ? replace(theirs.load(k)) : theirs.load(k));
  nn::save_safetensors((dir.path / "adapter_model.safetensors").string(), tensors, {{"format", "pt"}});
  return dir.path.string();
}

}  // namespace

TEST_CASE("modules_to_save: logits, loss and every gradient (LoRA's and the saved modules') equal HF PEFT's") {
  for (const std::string name : kFixtures) {
    INFO(name);
    const PeftFixture f(name);
    auto pm = f.load(/*trainable=*/true);
    // final norm (weight, bias) + 2 layers x Linear (weight, bias), beside LoRA's A and B per layer
    CHECK(pm->saved_parameters("default").size() == 6);
    check_against_peft(*pm, f, param_name);
  }
}

TEST_CASE("modules_to_save: saved here, PEFT's tensors and config; loaded back on a fresh base, the same logits and loss") {
  for (const std::string name : kFixtures) {
    INFO(name);
    const PeftFixture f(name);
    auto pm = f.load();
    TempDir out("lora_save");
    check_saved_as_peft(*pm, f, out.path.string());

    auto reloaded = check_reloaded(f, out.path.string());
    CHECK(reloaded->peft_config().modules_to_save() == f.info["modules_to_save"].get<std::vector<std::string>>());
  }
}

TEST_CASE("modules_to_save: merge_and_unload equals PEFT's, the trained modules in place") {
  for (const std::string name : kFixtures) {
    INFO(name);
    const PeftFixture f(name);
    auto pm = f.load();
    const Tensor ids = f.i32("input_ids");
    pm->merge_adapter();
    CHECK(ops::max_abs_diff(pm->forward(ids).value(), f.f32("merged.logits")) < 1e-5);
    std::shared_ptr<models::CausalLM> plain = pm->merge_and_unload();
    const double err = ops::max_abs_diff(plain->forward(ids).value(), f.f32("merged.logits"));
    MESSAGE(name << ": merged logits max abs error " << err);
    CHECK(err < 1e-5);
  }
}

TEST_CASE("modules_to_save: trained in place beside LoRA; saved and reloaded on a fresh base, the same loss") {
  const PeftFixture f("gpt2_lora_save");
  const Tensor ids = f.i32("input_ids"), labels = f.i32("labels");
  auto base = f.base();
  auto pm = peft::get_peft_model(base, lora_saving({"ln_f"}));
  pm->eval();  // no dropout: the losses compare exactly
  // 2 layers x (A 4 x 64 + B 192 x 4) + ln_f (64 + 64): the base's own ln_f, no copy.
  CHECK(pm->trainable_and_all_parameters().first == 2 * (4 * 64 + 192 * 4) + 2 * 64);
  const auto saved = pm->saved_parameters("default");
  REQUIRE(saved.size() == 2);
  CHECK(saved[0].first == "transformer.ln_f.weight");
  for (const auto& [pname, p] : base->named_parameters())
    if (pname == saved[0].first) CHECK(p.impl() == saved[0].second.impl());
  const Tensor before = saved[0].second.value().clone(Tag::workspace);

  std::vector<nn::NamedParameter> trainable;
  for (const auto& [pname, p] : pm->named_parameters())
    if (p.requires_grad()) trainable.emplace_back(pname, p);
  nn::SGD sgd(trainable, {.lr = 0.5});
  for (int step = 0; step < 3; ++step) {
    pm->loss(ids, labels).backward();
    sgd.step();
    sgd.zero_grad();
  }
  CHECK(ops::max_abs_diff(saved[0].second.value(), before) > 1e-3);  // ln_f did train
  const double loss = pm->loss(ids, labels).item();

  TempDir out("lora_save_trained");
  pm->save_pretrained(out.path.string());
  nn::SafetensorsFile file = nn::SafetensorsFile::open(out.path.string() + "/adapter_model.safetensors");
  CHECK(file.contains("base_model.model.transformer.ln_f.weight"));
  CHECK(file.contains("base_model.model.transformer.ln_f.bias"));
  auto reloaded = peft::load_peft_model(f.base(), out.path.string());
  reloaded->eval();
  CHECK(reloaded->loss(ids, labels).item() == doctest::Approx(loss).epsilon(1e-6));
}

TEST_CASE("modules_to_save beside IA3: PEFT 0.21's keys, the modules trainable") {
  const PeftFixture f("gpt2_lora_save");
  peft::Ia3Config ia3;  // PEFT's default targets
  ia3.modules_to_save = {"ln_f"};
  auto pm = peft::get_peft_model(f.base(), peft::PeftConfig::ia3(ia3));
  // What PEFT 0.21's get_peft_model_state_dict gives for IA3Config(modules_to_save=["ln_f"]) on this base.
  std::set<std::string> keys;
  for (const auto& [key, t] : pm->adapter_state_dict("default")) keys.insert(key);
  CHECK(keys == std::set<std::string>{"base_model.model.transformer.h.0.attn.c_attn.ia3_l",
                                      "base_model.model.transformer.h.0.mlp.c_proj.ia3_l",
                                      "base_model.model.transformer.h.1.attn.c_attn.ia3_l",
                                      "base_model.model.transformer.h.1.mlp.c_proj.ia3_l",
                                      "base_model.model.transformer.ln_f.bias", "base_model.model.transformer.ln_f.weight"});
  pm->loss(f.i32("input_ids"), f.i32("labels")).backward();
  for (const auto& [pname, p] : pm->saved_parameters("default")) CHECK_MESSAGE(p.grad().defined(), pname);
}

TEST_CASE("modules_to_save: bad input is an error naming the name, key or shapes") {
  const PeftFixture f("gpt2_lora_save");

  const std::string none = error_of([&] { peft::get_peft_model(f.base(), lora_saving({"ln_z"})); });
  CHECK_MESSAGE(none.find("modules_to_save 'ln_z' matches no module") != std::string::npos, none);
  CHECK_MESSAGE(none.find("ln_f") != std::string::npos, none);  // the modules there are

  // The same from a file: the error names the file.
  TempDir bad_name("lora_save_name");
  const std::string dir = copy_adapter(f, bad_name, "", [](Tensor t) { return t; });
  nlohmann::json cfg = read_json(dir + "/adapter_config.json");
  cfg["modules_to_save"] = {"ln_f", "nope"};
  std::ofstream(bad_name.path / "adapter_config.json") << cfg.dump();
  const std::string file_none = error_of([&] { peft::load_peft_model(f.base(), dir); });
  CHECK_MESSAGE(file_none.find("adapter_config.json") != std::string::npos, file_none);
  CHECK_MESSAGE(file_none.find("'nope'") != std::string::npos, file_none);

  TempDir bad_shape("lora_save_shape");
  const std::string key = "base_model.model.transformer.ln_f.weight";
  const std::string shape_dir = copy_adapter(f, bad_shape, key, [](Tensor t) { return t.narrow(0, 0, 32).contiguous(); });
  const std::string shape = error_of([&] { peft::load_peft_model(f.base(), shape_dir); });
  CHECK_MESSAGE(shape.find(key) != std::string::npos, shape);
  CHECK_MESSAGE(shape.find("(32)") != std::string::npos, shape);
  CHECK_MESSAGE(shape.find("(64)") != std::string::npos, shape);

  // GPT-2's lm_head is its token embedding (tied): PEFT unties them, we refuse.
  for (const char* tied : {"lm_head", "wte"}) {
    const std::string e = error_of([&] { peft::get_peft_model(f.base(), lora_saving({tied})); });
    CHECK_MESSAGE(e.find("tie_word_embeddings") != std::string::npos, e);
  }
  const std::string both = error_of([&] { peft::get_peft_model(f.base(), lora_saving({"c_attn"})); });
  CHECK_MESSAGE(both.find("also a LoRA target") != std::string::npos, both);

  // Trained in place: one adapter, and no base model to fall back to.
  auto pm = peft::get_peft_model(f.base(), lora_saving({"ln_f"}));
  const std::string second = error_of([&] { pm->add_adapter("other", lora_saving({})); });
  CHECK_MESSAGE(second.find("holds one adapter") != std::string::npos, second);
  const std::string disable = error_of([&] { pm->disable_adapters(); });
  CHECK_MESSAGE(disable.find("modules_to_save") != std::string::npos, disable);
  const std::string mixed = error_of([&] { pm->forward(f.i32("input_ids"), nullptr, {"default", peft::PeftModel::kBaseName}); });
  CHECK_MESSAGE(mixed.find("modules_to_save") != std::string::npos, mixed);

  // Prompt methods take no modules_to_save.
  const std::string prompt = error_of([] {
    peft::parse_adapter_config(R"({"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 2, "modules_to_save": ["ln_f"]})",
                               "cfg.json");
  });
  CHECK_MESSAGE(prompt.find("modules_to_save") != std::string::npos, prompt);
  const std::string empty = error_of([] {
    peft::parse_adapter_config(R"({"peft_type": "LORA", "target_modules": ["c_attn"], "modules_to_save": [""]})", "cfg.json");
  });
  CHECK_MESSAGE(empty.find("empty name") != std::string::npos, empty);
}

}  // namespace mp::test
