// LoRA behaviour on the tiny GPT-2 and OPT fixtures: merge/unmerge, several
// adapters, dropout without extra activation bytes, exactly the adapter's
// grad and optimizer bytes, and clear errors for bad configs and files.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "helpers.h"
#include "models/load.h"
#include "nn/adamw.h"
#include "peft/peft_model.h"

namespace mp::test {
namespace {

using ag::Variable;

std::shared_ptr<models::CausalLM> tiny(const std::string& name) {
  return models::load_pretrained(fixtures_dir() + "/" + name);
}

peft::PeftConfig lora(std::vector<std::string> targets, int r = 4, float dropout = 0.f) {
  return peft::PeftConfig::lora({.r = r, .lora_alpha = 8, .lora_dropout = dropout, .target_modules = std::move(targets),
                                 .init_lora_weights = peft::LoraInit::none});  // B random: the adapter does something
}

Tensor batch_ids() { return pattern_ids(2, 8, 256); }

TEST_CASE("lora: merged logits equal unmerged; unmerge restores W0") {
  for (const char* base : {"gpt2_tiny", "opt_tiny"}) {
    SUBCASE(base) {
      auto pm = peft::get_peft_model(tiny(base), lora({std::string(base) == "gpt2_tiny" ? "c_attn" : "q_proj"}));
      pm->eval();
      nn::Linear* layer = pm->lora_layers().front().second;
      Tensor w0 = layer->weight.value().clone(Tag::workspace);
      Tensor unmerged = pm->forward(batch_ids()).value();
      pm->merge_adapter();
      CHECK(pm->merged());
      CHECK(ops::max_abs_diff(layer->weight.value(), w0) > 1e-4);  // the weight did change
      CHECK(ops::max_abs_diff(pm->forward(batch_ids()).value(), unmerged) < 1e-5);
      pm->unmerge_adapter();
      CHECK(ops::max_abs_diff(layer->weight.value(), w0) < 1e-6);
      CHECK(ops::max_abs_diff(pm->forward(batch_ids()).value(), unmerged) < 1e-5);

      // merge_and_unload: a plain model with the same outputs and HF names only
      std::shared_ptr<models::CausalLM> plain = pm->merge_and_unload();
      CHECK(ops::max_abs_diff(plain->forward(batch_ids()).value(), unmerged) < 1e-5);
      for (auto& [name, p] : plain->named_parameters()) CHECK(name.find("lora") == std::string::npos);
    }
  }
}

TEST_CASE("lora: switching adapters changes outputs, switching back restores them exactly") {
  auto pm = peft::get_peft_model(tiny("gpt2_tiny"), lora({"c_attn"}));
  pm->add_adapter("other", lora({"c_attn", "c_fc"}, 2));
  pm->eval();
  Tensor first = pm->forward(batch_ids()).value();
  pm->set_adapter("other");
  CHECK(pm->active_adapter() == "other");
  Tensor second = pm->forward(batch_ids()).value();
  CHECK(ops::max_abs_diff(first, second) > 1e-4);
  // only the active adapter trains
  for (auto& [name, p] : pm->named_parameters())
    CHECK(p.requires_grad() == (name.find(".other.") != std::string::npos));
  pm->set_adapter("default");
  CHECK(ops::max_abs_diff(pm->forward(batch_ids()).value(), first) == 0.0);

  pm->disable_adapters();
  Tensor base_only = pm->forward(batch_ids()).value();
  CHECK(ops::max_abs_diff(base_only, first) > 1e-4);
  pm->enable_adapters();
  pm->delete_adapter("other");
  CHECK(pm->adapter_names() == std::vector<std::string>{"default"});
  CHECK(ops::max_abs_diff(pm->forward(batch_ids()).value(), first) == 0.0);
}

TEST_CASE("peft errors: clear mp::Error messages") {
  SUBCASE("unknown target module lists the available ones") {
    try {
      peft::get_peft_model(tiny("gpt2_tiny"), lora({"q_proj"}));
      FAIL("no error");
    } catch (const Error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("q_proj") != std::string::npos);
      CHECK(msg.find("c_attn") != std::string::npos);
      CHECK(msg.find("c_fc") != std::string::npos);
    }
  }
  SUBCASE("r <= 0") {
    CHECK_THROWS_WITH_AS(peft::get_peft_model(tiny("gpt2_tiny"), lora({"c_attn"}, 0)),
                         doctest::Contains("r must be > 0"), Error);
    CHECK_THROWS_AS(peft::parse_adapter_config(R"({"peft_type": "LORA", "r": -1, "target_modules": ["c_attn"]})", "x"),
                    Error);
  }
  SUBCASE("unknown peft_type") {
    CHECK_THROWS_WITH_AS(peft::parse_adapter_config(R"({"peft_type": "LOHA"})", "cfg.json"),
                         doctest::Contains("unknown peft_type \"LOHA\""), Error);
  }
  SUBCASE("not JSON, wrong types") {
    CHECK_THROWS_AS(peft::parse_adapter_config("{", "cfg.json"), Error);
    CHECK_THROWS_WITH_AS(peft::parse_adapter_config(R"({"peft_type": "LORA", "r": "8"})", "cfg.json"),
                         doctest::Contains("'r'"), Error);
  }
  SUBCASE("an adapter made for another base model") {
    // OPT's LoRA adapter (q_proj, v_proj) on GPT-2; GPT-2's prefix on a model of other width
    CHECK_THROWS_WITH_AS(peft::load_peft_model(tiny("gpt2_tiny"), fixtures_dir() + "/peft/opt_lora"),
                         doctest::Contains("not found"), Error);
    const TempDir tmp("wrong_dims");
    const std::string dir = tmp.str();
    std::ofstream(dir + "/adapter_config.json")
        << R"({"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 4, "token_dim": 768, "num_layers": 12,
              "num_attention_heads": 12})";
    CHECK_THROWS_WITH_AS(peft::load_peft_model(tiny("gpt2_tiny"), dir), doctest::Contains("token_dim = 768"), Error);
  }
  SUBCASE("keys of PEFT 0.21: read at their defaults, refused when set") {
    // What HF PEFT 0.21.2's save_pretrained writes for LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"],
    // fan_in_fan_out=True) (reference/check_interop.py, case peft-lora).
    const auto written = nlohmann::json::parse(R"({
      "alora_invocation_tokens": null, "alpha_pattern": {}, "arrow_config": null, "auto_mapping": null,
      "base_model_name_or_path": "tests/fixtures/gpt2_tiny", "bias": "none", "corda_config": null,
      "ensure_weight_tying": false, "eva_config": null, "exclude_modules": null, "fan_in_fan_out": true,
      "inference_mode": true, "init_lora_weights": true, "kasa_config": null, "layer_replication": null,
      "layers_pattern": null, "layers_to_transform": null, "loftq_config": {}, "lora_alpha": 8, "lora_bias": false,
      "lora_dropout": 0.0, "lora_ga_config": null, "megatron_config": null, "megatron_core": "megatron.core",
      "modules_to_save": null, "monteclora_config": null, "peft_type": "LORA", "peft_version": "0.21.2",
      "qalora_group_size": 16, "r": 4, "rank_pattern": {}, "revision": null, "target_modules": ["c_attn"],
      "target_parameters": null, "task_type": "CAUSAL_LM", "trainable_token_indices": null, "use_bdlora": null,
      "use_dora": false, "use_qalora": false, "use_rslora": false, "velora_config": null})");
    const peft::PeftConfig c = peft::parse_adapter_config(written.dump(), "cfg.json");
    REQUIRE(c.as_lora());
    CHECK(c.as_lora()->r == 4);
    CHECK(c.as_lora()->fan_in_fan_out);
    const std::pair<const char*, const char*> set[] = {
        {"exclude_modules", R"(["c_attn"])"}, {"lora_bias", "true"}, {"target_parameters", R"(["attn.c_attn.weight"])"},
        {"trainable_token_indices", "[0, 1]"}, {"alora_invocation_tokens", "[5, 6]"}, {"use_qalora", "true"},
        {"use_bdlora", R"({"nblocks": 2})"}, {"arrow_config", R"({"top_k": 3})"}, {"kasa_config", R"({"x": 1})"},
        {"monteclora_config", R"({"x": 1})"}, {"velora_config", R"({"x": 1})"}};
    for (const auto& [key, value] : set) {
      CAPTURE(key);
      auto j = written;
      j[key] = nlohmann::json::parse(value);
      CHECK_THROWS_WITH_AS(peft::parse_adapter_config(j.dump(), "cfg.json"),
                           doctest::Contains((std::string("'") + key + "'").c_str()), Error);
    }
  }
  SUBCASE("adapter tensors of the wrong shape") {
    const TempDir tmp("wrong_shape");
    const std::string dir = tmp.str();
    std::filesystem::copy_file(fixtures_dir() + "/peft/gpt2_lora/adapter_config.json", dir + "/adapter_config.json");
    nn::save_safetensors(dir + "/adapter_model.safetensors",
                         {{"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", Tensor::zeros({3, 64})}});
    try {
      peft::load_peft_model(tiny("gpt2_tiny"), dir);
      FAIL("no error");
    } catch (const Error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("(3, 64)") != std::string::npos);
      CHECK(msg.find("missing") != std::string::npos);
    }
  }
}

TEST_CASE("peft config: adapter_config.json round trip and the trainable line format") {
  for (const char* c : {"gpt2_lora", "gpt2_lora_rslora_loraonly", "gpt2_prompt_text", "gpt2_prefix_proj"}) {
    const std::string path = fixtures_dir() + "/peft/" + c + "/adapter_config.json";
    peft::PeftConfig config = peft::load_adapter_config(path);
    CHECK(nlohmann::json::parse(peft::adapter_config_json(config)) == read_json(path));
  }
  CHECK(peft::trainable_line(2048, 122624) == "trainable params: 2,048 || all params: 122,624 || trainable%: 1.6701");
  CHECK(peft::trainable_line(294912, 124734720) ==
        "trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364");
}

}  // namespace
}  // namespace mp::test
