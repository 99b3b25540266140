// A PEFT 0.21 fixture of one adapter on a tiny base (reference/make_ia3_fixture.py,
// make_dora_fixture.py): tests/fixtures/peft/<name>/ holds PEFT's adapter
// files, reference.json (the base, the saved keys) and reference.safetensors
// (input_ids, labels, logits, loss, grad.<key> per saved key, merged.logits).
// The checks every such method's test makes against it.
#pragma once
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "helpers.h"
#include "models/load.h"
#include "peft/peft_model.h"

namespace mp::test {

struct PeftFixture {
  std::string dir;
  nlohmann::json info;
  nn::SafetensorsFile ref;
  explicit PeftFixture(const std::string& name)
      : dir(fixtures_dir() + "/peft/" + name), info(read_json(dir + "/reference.json")),
        ref(nn::SafetensorsFile::open(dir + "/reference.safetensors")) {}
  std::shared_ptr<models::CausalLM> base(DType weight_dtype = DType::f32) const {
    return models::load_pretrained(fixtures_dir() + "/" + info["base"].get<std::string>(), weight_dtype);
  }
  // PEFT's adapter on `model` (the f32 base by default), in eval mode.
  std::shared_ptr<peft::PeftModel> load(bool trainable = false, std::shared_ptr<models::CausalLM> model = nullptr) const {
    auto pm = peft::load_peft_model(model ? std::move(model) : base(), dir, "default", trainable);
    pm->eval();
    return pm;
  }
  Tensor f32(const std::string& key) const { return ref.load(key, DType::f32, Tag::workspace); }
  Tensor i32(const std::string& key) const { return ref.load(key, DType::i32, Tag::workspace); }
};

// pm's logits, loss and the gradient of each trainable parameter equal PEFT's;
// param_name maps a saved key to our parameter's name, and PEFT trains
// exactly the parameters of the saved keys.
inline void check_against_peft(peft::PeftModel& pm, const PeftFixture& f, std::string (*param_name)(std::string)) {
  const double logit_err = ops::max_abs_diff(pm.forward(f.i32("input_ids")).value(), f.f32("logits"));
  MESSAGE(f.dir << ": logits max abs error " << logit_err);
  CHECK(logit_err < 1e-5);
  ag::Variable loss = pm.loss(f.i32("input_ids"), f.i32("labels"));
  CHECK(std::abs(loss.item() - f.f32("loss").item()) < 1e-5);
  loss.backward();
  const auto& keys = f.info["keys"];
  int trainable = 0;
  for (const auto& [pname, p] : pm.named_parameters()) {
    if (!p.requires_grad()) continue;
    ++trainable;
    INFO(pname);
    std::string hf;
    for (const auto& k : keys)
      if (param_name(k.get<std::string>()) == pname) hf = k.get<std::string>();
    REQUIRE_MESSAGE(!hf.empty(), "a trainable parameter PEFT does not train: " << pname);
    const double err = rel_error(p.grad(), f.f32("grad." + hf));
    CHECK_MESSAGE(err < 1e-4, hf << " gradient relative error " << err);
  }
  CHECK(trainable == int(keys.size()));
  if (f.info.contains("nb_trainable_parameters"))  // PEFT's get_nb_trainable_parameters: (trainable, all)
    CHECK(pm.trainable_and_all_parameters() == f.info["nb_trainable_parameters"].get<std::pair<int64_t, int64_t>>());
}

// pm saved to out_dir holds PEFT's tensors under PEFT's keys and PEFT's config.
inline void check_saved_as_peft(const peft::PeftModel& pm, const PeftFixture& f, const std::string& out_dir) {
  pm.save_pretrained(out_dir);
  nn::SafetensorsFile ours = nn::SafetensorsFile::open(out_dir + "/adapter_model.safetensors");
  nn::SafetensorsFile theirs = nn::SafetensorsFile::open(f.dir + "/adapter_model.safetensors");
  CHECK(ours.names() == theirs.names());
  for (const std::string& key : theirs.names()) CHECK(ops::max_abs_diff(ours.load(key), theirs.load(key)) == 0.0);
  CHECK(read_json(out_dir + "/adapter_config.json") == read_json(f.dir + "/adapter_config.json"));
}

// The adapter saved in dir, loaded on a fresh base (eval mode): the fixture's logits and loss.
inline std::shared_ptr<peft::PeftModel> check_reloaded(const PeftFixture& f, const std::string& dir) {
  auto reloaded = peft::load_peft_model(f.base(), dir);
  reloaded->eval();
  CHECK(ops::max_abs_diff(reloaded->forward(f.i32("input_ids")).value(), f.f32("logits")) < 1e-5);
  CHECK(std::abs(reloaded->loss(f.i32("input_ids"), f.i32("labels")).item() - f.f32("loss").item()) < 1e-5);
  return reloaded;
}

}  // namespace mp::test
