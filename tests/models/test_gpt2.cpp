// GPT-2: parity with HF's GPT2LMHeadModel on tests/fixtures/gpt2_tiny, the
// forward options (inputs_embeds, prefix, cache, mask), and loading/saving
// with its errors.
#include <doctest/doctest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "models/gpt2.h"
#include "nn/safetensors.h"
#include "nn/state_dict.h"
#include "parity.h"

using namespace mp;
using namespace mp::test;
namespace fs = std::filesystem;

TEST_CASE("gpt2_tiny: logits and loss match HF") { check_logits_and_loss("gpt2_tiny"); }
TEST_CASE("gpt2_tiny: every parameter gradient matches HF") { check_gradients("gpt2_tiny"); }
TEST_CASE("gpt2_tiny: 10 AdamW steps give HF's losses") { check_adamw("gpt2_tiny"); }
TEST_CASE("gpt2_tiny: padded batch logits match HF") { check_masked("gpt2_tiny"); }

TEST_CASE("gpt2: inputs_embeds = embed_tokens(ids) gives the same logits as ids") {
  Fixture f("gpt2_tiny");
  auto model = f.model();
  Tensor ids = f.tensor("input_ids");  // (B, T)
  models::ForwardOptions opt;
  opt.inputs_embeds = model->embed_tokens(ids);  // (B, T, C)
  CHECK(ops::max_abs_diff(model->forward(Tensor(), opt).value(), model->forward(ids).value()) < 1e-6);
}

TEST_CASE("gpt2: a prefix is past keys/values; the cache gives the same logits as one forward") {
  Fixture f("gpt2_tiny");
  auto model = f.model();
  ag::NoGrad no_grad;
  Tensor ids = f.tensor("input_ids");                 // (B, 8)
  Tensor full = model->forward(ids).value();           // (B, 8, V)
  Tensor head = ids.narrow(1, 0, 5).contiguous();      // (B, 5)
  Tensor tail = ids.narrow(1, 5, 3).contiguous();      // (B, 3)
  Tensor want = full.narrow(1, 5, 3).contiguous();     // (B, 3, V)

  // The cache: the head first, then the tail.
  models::KVCache cache(model->num_layers());
  models::ForwardOptions with_cache;
  with_cache.cache = &cache;
  model->forward(head, with_cache);
  CHECK(cache.length() == 5);
  CHECK(ops::max_abs_diff(model->forward(tail, with_cache).value(), want) < 1e-5);
  CHECK(cache.length() == 8);

  // The same keys/values handed in as a prefix (what PEFT prefix tuning does):
  // the tail's positions start after the prefix, as with HF's past_key_values.
  models::KVCache head_cache(model->num_layers());
  models::ForwardOptions fill;
  fill.cache = &head_cache;
  model->forward(head, fill);
  std::vector<models::KeyValue> prefix;
  for (int l = 0; l < model->num_layers(); ++l)
    prefix.push_back({Variable(head_cache.keys(l)), Variable(head_cache.values(l))});  // (B, H, 5, D)
  models::ForwardOptions with_prefix;
  with_prefix.prefix = &prefix;
  CHECK(ops::max_abs_diff(model->forward(tail, with_prefix).value(), want) < 1e-5);

  // An all-ones mask over prefix + tokens changes nothing; a wrong width is an error.
  Tensor ones = Tensor::full({ids.size(0), 8}, 1, DType::i32);
  with_prefix.attention_mask = &ones;
  CHECK(ops::max_abs_diff(model->forward(tail, with_prefix).value(), want) < 1e-5);
  Tensor narrow_mask = Tensor::full({ids.size(0), 3}, 1, DType::i32);
  with_prefix.attention_mask = &narrow_mask;
  CHECK(contains(error_of([&] { model->forward(tail, with_prefix); }), "attention_mask must be (B, S)"));
}

TEST_CASE("gpt2: gradients reach a prefix and inputs_embeds") {
  auto model = models::create_model("gpt2-tiny", 7);
  model->freeze();
  const int64_t B = 2, H = model->num_heads(), P = 3, D = model->head_dim();
  std::vector<models::KeyValue> prefix;
  for (int l = 0; l < model->num_layers(); ++l)
    prefix.push_back({Variable(Tensor::full({B, H, P, D}, 0.1), true), Variable(Tensor::full({B, H, P, D}, 0.2), true)});
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8}, {B, 4});
  models::ForwardOptions opt;
  opt.prefix = &prefix;
  model->loss(ids, ids, opt).backward();
  for (const models::KeyValue& kv : prefix) {
    CHECK(kv.key.grad().defined());
    CHECK(kv.value.grad().defined());
  }
  for (const auto& [name, p] : model->named_parameters()) CHECK_MESSAGE(!p.grad().defined(), name);
}

TEST_CASE("gpt2: training mode applies attention dropout (attn_pdrop) and nothing else when the others are 0") {
  models::ModelConfig c = models::builtin_config("gpt2-tiny");
  c.embd_pdrop = c.resid_pdrop = 0.f;
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{5, 77, 130, 9, 201, 3, 42, 8}, {1, 8});
  auto logits = [&](float attn_pdrop, bool training) {
    c.attn_pdrop = attn_pdrop;
    auto model = models::make_model(c, 3);
    model->train(training);
    return model->forward(ids).value();
  };
  const Tensor eval = logits(0.1f, false);
  CHECK(ops::max_abs_diff(logits(0.f, true), eval) == 0.0);
  CHECK(ops::max_abs_diff(logits(0.1f, true), eval) > 1e-3);
}

TEST_CASE("gpt2: built-in configs and HF-style random init") {
  models::ModelConfig c = models::builtin_config("gpt2");
  CHECK(c.num_layers == 12);
  CHECK(c.hidden_size == 768);
  CHECK(c.vocab_size == 50257);
  CHECK(models::builtin_config("gpt2-medium").num_layers == 24);
  CHECK(contains(error_of([] { models::builtin_config("gpt3"); }), "gpt2-medium"));

  auto a = models::create_model("gpt2-tiny", 1), b = models::create_model("gpt2-tiny", 1);
  auto other = models::create_model("gpt2-tiny", 2);
  CHECK(a->num_parameters() == b->num_parameters());
  const auto pa = a->named_parameters(), pb = b->named_parameters(), po = other->named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) CHECK(ops::max_abs_diff(pa[i].second.value(), pb[i].second.value()) == 0);
  auto std_of = [](const Tensor& t) {
    double s = 0;
    for (float v : t.to_floats()) s += double(v) * v;
    return std::sqrt(s / double(t.numel()));
  };
  auto* gpt2 = dynamic_cast<models::GPT2*>(a.get());
  REQUIRE(gpt2);
  CHECK(std_of(gpt2->transformer->wte->weight.value()) == doctest::Approx(0.02).epsilon(0.05));
  // c_proj: 0.02 / sqrt(2 * n_layer) = 0.01 for 2 layers.
  CHECK(std_of((*gpt2->transformer->h)[0].attn->c_proj->weight.value()) == doctest::Approx(0.01).epsilon(0.1));
  CHECK(std_of((*gpt2->transformer->h)[0].ln_1->weight.value()) == 1.0);
  CHECK(ops::max_abs_diff(pa[0].second.value(), po[0].second.value()) > 0);
}

TEST_CASE("gpt2: save_pretrained then load_pretrained gives the same model") {
  Fixture f("gpt2_tiny");
  auto model = f.model();
  TempDir dir;
  models::save_pretrained(*model, dir.str());
  CHECK(fs::exists(dir / "config.json"));
  auto again = models::load_pretrained(dir.str());
  Tensor ids = f.tensor("input_ids");
  CHECK(ops::max_abs_diff(model->forward(ids).value(), again->forward(ids).value()) == 0);
  // The same names as HF saved: no lm_head.weight (tied).
  nn::SafetensorsFile saved = nn::SafetensorsFile::open(dir / "model.safetensors");
  CHECK(saved.names() == nn::SafetensorsFile::open(f.dir + "/model.safetensors").names());
  CHECK(saved.metadata().at("format") == "pt");
}

TEST_CASE("gpt2: hub-style checkpoints (no transformer. prefix, mask buffers, lm_head) load") {
  Fixture f("gpt2_tiny");
  nn::SafetensorsFile file = nn::SafetensorsFile::open(f.dir + "/model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& name : file.names()) tensors.push_back({name.substr(12), file.load(name)});
  tensors.push_back({"h.0.attn.bias", Tensor::zeros({1, 1, 64, 64})});
  tensors.push_back({"h.0.attn.masked_bias", Tensor::zeros({1})});
  tensors.push_back({"lm_head.weight", file.load("transformer.wte.weight")});
  TempDir dir;
  fs::copy_file(f.dir + "/config.json", dir / "config.json");
  nn::save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
  auto model = models::load_pretrained(dir.str());
  CHECK(ops::max_abs_diff(model->forward(f.tensor("input_ids")).value(), f.tensor("logits")) < 1e-4);
}

// ---- bad input: each is an mp::Error naming the file, the key or the shape ----

TEST_CASE("gpt2 config.json errors name the file and the key") {
  nlohmann::json good = nlohmann::json::parse(read_text(fixtures_dir() + "/gpt2_tiny/config.json"));
  auto parse = [](const nlohmann::json& j) { models::parse_config(j.dump(), "dir/config.json"); };
  CHECK_NOTHROW(parse(good));

  nlohmann::json j = good;
  j.erase("n_head");
  std::string e = error_of([&] { parse(j); });
  CHECK(contains(e, "dir/config.json"));
  CHECK(contains(e, "missing key \"n_head\""));

  j = good;
  j["n_embd"] = "64";
  CHECK(contains(error_of([&] { parse(j); }), "\"n_embd\" must be an integer"));
  j = good;
  j["n_layer"] = 0;
  CHECK(contains(error_of([&] { parse(j); }), "\"n_layer\" must be positive"));
  j = good;
  j["n_head"] = 5;
  CHECK(contains(error_of([&] { parse(j); }), "not divisible"));
  j = good;
  j["model_type"] = "llama";
  CHECK(contains(error_of([&] { parse(j); }), "model_type \"llama\" is not supported"));
  j = good;
  j["activation_function"] = "relu";
  CHECK(contains(error_of([&] { parse(j); }), "activation_function \"relu\""));
  j = good;
  j["resid_pdrop"] = 1.5;
  CHECK(contains(error_of([&] { parse(j); }), "\"resid_pdrop\""));
  CHECK(contains(error_of([] { models::parse_config("{ nope", "x/config.json"); }), "x/config.json line 1, column 4: not valid JSON"));
  CHECK(contains(error_of([] { models::load_config("/nonexistent/config.json"); }), "/nonexistent/config.json"));

  // n_inner: null means 4 * n_embd.
  j = good;
  j["n_inner"] = nullptr;
  CHECK(models::parse_config(j.dump(), "c").ffn_dim == 4 * j["n_embd"].get<int>());
}

TEST_CASE("gpt2: a checkpoint disagreeing with config.json names every bad tensor and both shapes") {
  Fixture f("gpt2_tiny");
  TempDir dir;
  fs::copy_file(f.dir + "/model.safetensors", dir / "model.safetensors");
  nlohmann::json config = nlohmann::json::parse(read_text(f.dir + "/config.json"));
  config["n_positions"] = 32;  // the checkpoint's wpe has 64 rows
  config["n_layer"] = 1;       // and it has a layer 1 the model lacks
  write_text(dir / "config.json", config.dump());
  std::string e = error_of([&] { models::load_pretrained(dir.str()); });
  CHECK(contains(e, "model.safetensors"));
  CHECK(contains(e, "transformer.wpe.weight"));
  CHECK(contains(e, "(64, 64)"));
  CHECK(contains(e, "(32, 64)"));
  CHECK(contains(e, "transformer.h.1.attn.c_attn.weight"));
}

TEST_CASE("gpt2: a checkpoint missing a tensor is an error naming it") {
  Fixture f("gpt2_tiny");
  nn::SafetensorsFile file = nn::SafetensorsFile::open(f.dir + "/model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& name : file.names())
    if (name != "transformer.ln_f.bias") tensors.push_back({name, file.load(name)});
  TempDir dir;
  fs::copy_file(f.dir + "/config.json", dir / "config.json");
  nn::save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
  CHECK(contains(error_of([&] { models::load_pretrained(dir.str()); }), "transformer.ln_f.bias"));
}

TEST_CASE("gpt2: directories without a safetensors checkpoint") {
  Fixture f("gpt2_tiny");
  TempDir dir;
  fs::copy_file(f.dir + "/config.json", dir / "config.json");
  write_text(dir / "pytorch_model.bin", "not really");
  std::string e = error_of([&] { models::load_pretrained(dir.str()); });
  CHECK(contains(e, "contains pytorch_model.bin; only safetensors are supported; convert with"));
  CHECK(contains(e, dir.str()));

  fs::remove(dir / "pytorch_model.bin");
  CHECK(contains(error_of([&] { models::load_pretrained(dir.str()); }), "no model.safetensors"));
  fs::remove(dir / "config.json");
  CHECK(contains(error_of([&] { models::load_pretrained(dir.str()); }), "config.json"));
  CHECK(contains(error_of([] { models::load_pretrained("/nonexistent/model"); }), "/nonexistent/model"));
  CHECK(contains(error_of([] { models::create_model("/nonexistent/model"); }), "not a directory"));
}

TEST_CASE("gpt2: bad forward inputs") {
  auto model = models::create_model("gpt2-tiny", 0);
  Tensor too_long = Tensor::zeros({1, model->max_positions() + 1}, DType::i32);
  CHECK(contains(error_of([&] { model->forward(too_long); }), "positions"));
  CHECK(contains(error_of([&] { model->forward(Tensor::zeros({4}, DType::i32)); }), "(B, T) i32"));
  Tensor ids = Tensor::zeros({1, 4}, DType::i32);
  CHECK(contains(error_of([&] { model->loss(ids, Tensor::zeros({1, 3}, DType::i32)); }), "labels"));
}
