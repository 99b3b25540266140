// modules_to_save (peft/modules_to_save.h) against HF PEFT 0.21 on the tiny
// GPT-2 and OPT (reference/make_modules_to_save_fixture.py,
// tests/fixtures/peft/<base>_lora_save/): LoRA plus the final layer norm and
// each layer's feed-forward output Linear trained in full; <base>_lora_save_tied/:
// one side of the tied lm_head / token embedding (GPT-2's head, OPT's
// embedding), untied and trained as a copy. PEFT's adapter, with random lora_B
// and moved saved modules, loaded here gives PEFT's logits, loss, gradients and
// parameter counts; saved here, PEFT's tensors and config; merged, PEFT's
// merge_and_unload logits. Trained here, each adapter its own copy, the base's
// values kept (disable_adapters, another adapter); saved and reloaded on a
// fresh base, the same loss. Bad input: errors naming the name, key and shapes.
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

const char* const kFixtures[] = {"gpt2_lora_save", "opt_lora_save", "gpt2_lora_save_tied", "opt_lora_save_tied"};

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
    size_t modules_keys = 0;  // PEFT's keys that are not LoRA's
    for (const auto& k : f.info["keys"]) modules_keys += k.get<std::string>().find(".lora_") == std::string::npos;
    CHECK(pm->saved_parameters("default").size() == modules_keys);
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

TEST_CASE("modules_to_save: each adapter trains its own copy; the base keeps its values; saved and reloaded, the same loss") {
  const PeftFixture f("gpt2_lora_save");
  const Tensor ids = f.i32("input_ids"), labels = f.i32("labels");
  auto plain = f.base();  // the base model alone, for its logits
  const Tensor base_logits = plain->forward(ids).value();
  auto pm = peft::get_peft_model(f.base(), lora_saving({"ln_f"}));
  pm->add_adapter("other", lora_saving({"ln_f"}));
  pm->add_adapter("no_save", lora_saving({}));
  pm->eval();  // no dropout: the losses compare exactly
  // Trainable: 2 layers x (A 4 x 64 + B 192 x 4) + the ln_f copy (64 + 64). All: the base, three
  // adapters' LoRA factors and two ln_f copies.
  const int64_t lora = 2 * (4 * 64 + 192 * 4), ln_f = 2 * 64;
  CHECK(pm->trainable_and_all_parameters() == std::pair<int64_t, int64_t>{lora + ln_f, plain->num_parameters() + 3 * lora + 2 * ln_f});
  const auto saved = pm->saved_parameters("default");
  REQUIRE(saved.size() == 2);
  CHECK(saved[0].first == "transformer.ln_f.weight");
  const Tensor original = plain->find_module("transformer.ln_f")->named_parameters()[0].second.value();
  CHECK(ops::max_abs_diff(saved[0].second.value(), original) == 0.0);  // a copy of the original, to start

  std::vector<nn::NamedParameter> trainable;
  for (const auto& [pname, p] : pm->named_parameters())
    if (p.requires_grad()) trainable.emplace_back(pname, p);
  nn::SGD sgd(trainable, {.lr = 0.5});
  for (int step = 0; step < 3; ++step) {
    pm->loss(ids, labels).backward();
    sgd.step();
    sgd.zero_grad();
  }
  CHECK(ops::max_abs_diff(saved[0].second.value(), original) > 1e-3);  // the copy trained
  const double loss = pm->loss(ids, labels).item();

  // Disabled, another adapter (lora_B is zero at init, its ln_f copy untrained), rows of the base in a
  // mixed batch: the base model's own logits, its ln_f untouched.
  pm->disable_adapters();
  CHECK(ops::max_abs_diff(pm->forward(ids).value(), base_logits) == 0.0);
  pm->enable_adapters();
  CHECK(pm->loss(ids, labels).item() == loss);
  pm->set_adapter("other");
  CHECK(ops::max_abs_diff(pm->forward(ids).value(), base_logits) == 0.0);
  const Tensor mixed = pm->forward(ids, nullptr, {"no_save", peft::PeftModel::kBaseName}).value();  // (B, T, V)
  CHECK(ops::max_abs_diff(mixed, base_logits) == 0.0);
  pm->set_adapter("default");
  CHECK(pm->loss(ids, labels).item() == loss);

  TempDir out("lora_save_trained");
  pm->save_pretrained(out.path.string(), "default");
  nn::SafetensorsFile file = nn::SafetensorsFile::open(out.path.string() + "/adapter_model.safetensors");
  CHECK(file.contains("base_model.model.transformer.ln_f.weight"));
  CHECK(file.contains("base_model.model.transformer.ln_f.bias"));
  auto reloaded = peft::load_peft_model(f.base(), out.path.string());
  reloaded->eval();
  CHECK(reloaded->loss(ids, labels).item() == doctest::Approx(loss).epsilon(1e-6));
  pm->save_pretrained(out.path.string(), "other");  // the other adapter's copy: still the original
  CHECK(ops::max_abs_diff(nn::SafetensorsFile::open(out.path.string() + "/adapter_model.safetensors")
                              .load("base_model.model.transformer.ln_f.weight"),
                          original) == 0.0);
  pm->delete_adapter("default");  // the base's ln_f again (other is not active)
  CHECK(ops::max_abs_diff(pm->forward(ids).value(), base_logits) == 0.0);
}

TEST_CASE("modules_to_save: moved with the model (Module::to), the originals and copies follow it") {
  const PeftFixture f("gpt2_lora_save");
  const Tensor ids = f.i32("input_ids");
  auto pm = f.load();
  const Tensor with = pm->forward(ids).value();  // (B, T, V) on the host
  pm->disable_adapters();
  const Tensor without = pm->forward(ids).value();
  pm->enable_adapters();
  pm->to(kSim);  // the sim device runs the CPU's kernels: the same logits, bit for bit
  DeviceScope on_sim(kSim);
  const Tensor sim_ids = ids.to(kSim);
  pm->disable_adapters();
  CHECK(ops::max_abs_diff(pm->forward(sim_ids).value().to(kCPU), without) == 0.0);
  pm->enable_adapters();
  CHECK(ops::max_abs_diff(pm->forward(sim_ids).value().to(kCPU), with) == 0.0);
  for (const auto& [pname, p] : pm->saved_parameters("default")) CHECK(p.value().device() == kSim);
}

TEST_CASE("modules_to_save on a tied head or embedding: untied, the other side keeps the original values") {
  for (const std::string name : {"gpt2_lora_save_tied", "opt_lora_save_tied"}) {
    INFO(name);
    const PeftFixture f(name);
    const Tensor ids = f.i32("input_ids");
    auto plain = f.base();
    auto pm = f.load();
    const models::CausalLM& model = pm->base_model();
    CHECK(!model.config().tie_word_embeddings);
    CHECK(model.lm_head_weight().impl() != model.token_embedding_weight().impl());
    pm->disable_adapters();  // the head shows the table's own storage again
    CHECK(model.lm_head_weight().value().storage() == model.token_embedding_weight().value().storage());
    CHECK(ops::max_abs_diff(pm->forward(ids).value(), plain->forward(ids).value()) == 0.0);
  }
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

  const std::string both = error_of([&] { peft::get_peft_model(f.base(), lora_saving({"c_attn"})); });
  CHECK_MESSAGE(both.find("also a LoRA target") != std::string::npos, both);

  // A refused adapter leaves the model as it was; rows of an adapter with modules_to_save need their own batch.
  auto pm = peft::get_peft_model(f.base(), lora_saving({"ln_f"}));
  const std::string again = error_of([&] { pm->add_adapter("other", lora_saving({"c_attn"})); });
  CHECK_MESSAGE(again.find("also a LoRA target") != std::string::npos, again);
  CHECK(pm->adapter_names() == std::vector<std::string>{"default"});
  for (const auto& [path, linear] : pm->lora_layers())
    CHECK(!std::dynamic_pointer_cast<peft::LoraLinear>(linear->adapter())->has_adapter("other"));
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
  // PEFT 0.21's ensure_weight_tying keeps a tied head and embedding one trained copy; we untie them.
  const std::string tying = error_of([] {
    peft::parse_adapter_config(
        R"({"peft_type": "LORA", "target_modules": ["c_attn"], "modules_to_save": ["lm_head"], "ensure_weight_tying": true})",
        "cfg.json");
  });
  CHECK_MESSAGE(tying.find("'ensure_weight_tying': true") != std::string::npos, tying);
}

}  // namespace mp::test
