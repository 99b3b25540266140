// Pairs against HF transformers + PEFT (tests/fixtures/pairs, made by
// reference/make_pairs_fixture.py): a batch of prompt/completion pairs
// of mixed lengths, right-padded, with attention_mask and labels -100, gives
// HF's loss and adapter gradients. The batch itself is built by our data
// layer from the same prompt and completion ids, and must equal HF's.
#include <doctest/doctest.h>

#include "models/load.h"
#include "peft/peft_model.h"
#include "tests/peft/helpers.h"
#include "train/data/pairs.h"

using namespace mp;

TEST_CASE("pairs parity: padded, masked loss and adapter gradients as HF PEFT") {
  const std::string dir = test::fixtures_dir() + "/pairs";
  const nlohmann::json info = test::read_json(dir + "/reference.json");
  for (const auto& [name, c] : info["cases"].items()) {
    CAPTURE(name);
    nn::SafetensorsFile ref = nn::SafetensorsFile::open(dir + "/" + name + ".safetensors");
    auto ints = [&](const std::string& key) {
      Tensor t = ref.load(key, DType::i32, Tag::workspace);
      return std::vector<int32_t>(t.data<int32_t>(), t.data<int32_t>() + t.numel());
    };
    const std::vector<int32_t> prompts = ints("prompt_ids"), completions = ints("completion_ids");
    std::vector<train::Example> examples;
    size_t p = 0, q = 0;
    for (const auto& lengths : info["lengths"]) {
      const size_t np = lengths[0].get<size_t>(), nc = lengths[1].get<size_t>();
      examples.push_back(train::make_example(std::span(prompts).subspan(p, np), std::span(completions).subspan(q, nc),
                                             c["eos_id"].get<int32_t>(), 64));
      p += np;
      q += nc;
    }
    std::vector<const train::Example*> rows;
    for (const train::Example& e : examples) rows.push_back(&e);
    train::Batch batch = train::pad_batch(rows, c["pad_id"].get<int32_t>());
    CHECK(ints("input_ids") == std::vector<int32_t>(batch.ids.data<int32_t>(), batch.ids.data<int32_t>() + batch.ids.numel()));
    CHECK(ints("labels") == std::vector<int32_t>(batch.labels.data<int32_t>(), batch.labels.data<int32_t>() + batch.labels.numel()));
    CHECK(ints("attention_mask") == std::vector<int32_t>(batch.attention_mask.data<int32_t>(),
                                                         batch.attention_mask.data<int32_t>() + batch.attention_mask.numel()));

    auto pm = peft::load_peft_model(models::load_pretrained(test::fixtures_dir() + "/" + c["base"].get<std::string>()),
                                    test::fixtures_dir() + "/" + c["adapter"].get<std::string>(), "default", true);
    pm->eval();
    ag::Variable loss = pm->loss(batch.ids, batch.labels, &batch.attention_mask);
    const double want = ref.load("loss", DType::f32, Tag::workspace).item();
    MESSAGE(name << ": loss " << loss.item() << " vs HF " << want);
    CHECK(std::abs(loss.item() - want) <= 1e-5 * std::abs(want));
    loss.backward();
    int64_t checked = 0;
    for (const auto& key : c["grads"]) {
      const std::string hf = key.get<std::string>().substr(5);  // "grad." + HF's name
      ag::Variable param;
      for (auto& [n, v] : pm->named_parameters())
        if (n == test::our_name(hf)) param = v;
      REQUIRE_MESSAGE(param.grad().defined(), hf);
      const double err = test::rel_error(param.grad(), ref.load(key.get<std::string>(), DType::f32, Tag::workspace));
      CHECK_MESSAGE(err < 1e-4, hf << " gradient relative error " << err);
      ++checked;
    }
    int64_t trainable = 0;
    for (auto& [n, v] : pm->named_parameters()) trainable += v.requires_grad();
    CHECK(checked == trainable);
  }
}
