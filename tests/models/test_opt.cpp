// OPT: parity with HF's OPTForCausalLM on tests/fixtures/opt_tiny (pre-LN)
// and opt_tiny_postln (post-LN with project_in/out, like opt-350m), plus
// what is OPT's own: positions from the mask, the padding row, the layouts.
#include <doctest/doctest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "models/opt.h"
#include "parity.h"

using namespace mp;
using namespace mp::test;
namespace fs = std::filesystem;

TEST_CASE("opt_tiny: logits and loss match HF") { check_logits_and_loss("opt_tiny"); }
TEST_CASE("opt_tiny: every parameter gradient matches HF") { check_gradients("opt_tiny"); }
TEST_CASE("opt_tiny: 10 AdamW steps give HF's losses") { check_adamw("opt_tiny"); }
TEST_CASE("opt_tiny: padded batch logits match HF") { check_masked("opt_tiny"); }

TEST_CASE("opt_tiny_postln: logits and loss match HF") { check_logits_and_loss("opt_tiny_postln"); }
TEST_CASE("opt_tiny_postln: every parameter gradient matches HF") { check_gradients("opt_tiny_postln"); }
TEST_CASE("opt_tiny_postln: 10 AdamW steps give HF's losses") { check_adamw("opt_tiny_postln"); }
TEST_CASE("opt_tiny_postln: padded batch logits match HF") { check_masked("opt_tiny_postln"); }

TEST_CASE("opt: the module tree has HF's names for pre-LN and post-LN") {
  Fixture pre("opt_tiny"), post("opt_tiny_postln");
  auto a = pre.model(), b = post.model();
  auto names = [](const models::CausalLM& m) {
    std::vector<std::string> n;
    for (const auto& [name, p] : m.named_parameters()) n.push_back(name);
    std::sort(n.begin(), n.end());
    return n;
  };
  // What HF's named_parameters() listed (the tied lm_head once, as embed_tokens).
  auto hf = [](const Fixture& f) {
    std::vector<std::string> n = f.info["named_parameters"].get<std::vector<std::string>>();
    std::sort(n.begin(), n.end());
    return n;
  };
  CHECK(names(*a) == hf(pre));
  CHECK(names(*b) == hf(post));
  auto* opt = dynamic_cast<models::OPT*>(b.get());
  REQUIRE(opt);
  CHECK(opt->model->decoder->project_in != nullptr);
  CHECK(opt->model->decoder->final_layer_norm == nullptr);
  CHECK(opt->model->decoder->embed_positions->num_embeddings() == 64 + 2);
}

TEST_CASE("opt: positions come from the mask, so left padding does not move the real tokens") {
  Fixture f("opt_tiny");
  auto model = f.model();
  ag::NoGrad no_grad;
  // Row 1 of the masked batch is left-padded by 3: its real tokens alone give the same logits.
  Tensor ids = f.tensor("masked_input_ids");        // (3, 8)
  Tensor mask = f.tensor("masked_attention_mask");  // (3, 8)
  models::ForwardOptions opt;
  opt.attention_mask = &mask;
  Tensor padded = model->forward(ids, opt).value().select(0, 1).narrow(0, 3, 5);  // (5, V)
  Tensor alone = model->forward(ids.narrow(0, 1, 1).narrow(1, 3, 5).contiguous()).value().select(0, 0);  // (5, V)
  CHECK(ops::max_abs_diff(padded, alone) < 1e-5);
}

TEST_CASE("opt: the cache and a prefix give the same logits as one forward") {
  Fixture f("opt_tiny_postln");
  auto model = f.model();
  ag::NoGrad no_grad;
  Tensor ids = f.tensor("input_ids");              // (B, 8)
  Tensor want = model->forward(ids).value().narrow(1, 6, 2).contiguous();  // (B, 2, V)
  models::KVCache cache(model->num_layers());
  models::ForwardOptions with_cache;
  with_cache.cache = &cache;
  model->forward(ids.narrow(1, 0, 6).contiguous(), with_cache);
  Tensor tail = ids.narrow(1, 6, 2).contiguous();  // (B, 2)
  // The mask covers the 6 cached keys and the 2 new ones.
  Tensor ones = Tensor::full({ids.size(0), 8}, 1, DType::i32);
  with_cache.attention_mask = &ones;
  CHECK(ops::max_abs_diff(model->forward(tail, with_cache).value(), want) < 1e-5);

  std::vector<models::KeyValue> prefix;
  models::KVCache head(model->num_layers());
  models::ForwardOptions fill;
  fill.cache = &head;
  model->forward(ids.narrow(1, 0, 6).contiguous(), fill);
  for (int l = 0; l < model->num_layers(); ++l) prefix.push_back({Variable(head.keys(l)), Variable(head.values(l))});
  models::ForwardOptions with_prefix;
  with_prefix.prefix = &prefix;
  with_prefix.attention_mask = &ones;  // HF PEFT: ones over prefix + tokens, so positions start at 6
  CHECK(ops::max_abs_diff(model->forward(tail, with_prefix).value(), want) < 1e-5);
}

TEST_CASE("opt: inputs_embeds live in the embedding width (before project_in)") {
  Fixture f("opt_tiny_postln");
  auto model = f.model();
  Tensor ids = f.tensor("input_ids");
  models::ForwardOptions opt;
  opt.inputs_embeds = model->embed_tokens(ids);  // (B, T, 32)
  CHECK(opt.inputs_embeds.size(2) == 32);
  CHECK(ops::max_abs_diff(model->forward(Tensor(), opt).value(), model->forward(ids).value()) < 1e-6);
  opt.inputs_embeds = Variable(Tensor::zeros({2, 8, 64}));
  CHECK(contains(error_of([&] { model->forward(Tensor(), opt); }), "inputs_embeds must be (B, T, 32)"));
}

TEST_CASE("opt: built-in configs, random init and a save/load round trip") {
  models::ModelConfig c350 = models::builtin_config("opt-350m");
  CHECK(c350.num_layers == 24);
  CHECK(c350.word_embed_proj_dim == 512);
  CHECK(!c350.do_layer_norm_before);
  CHECK(!c350.has_final_layer_norm());
  models::ModelConfig c125 = models::builtin_config("opt-125m");
  CHECK(c125.ffn_dim == 3072);
  CHECK(c125.max_positions == 2048);
  CHECK(c125.vocab_size == 50272);

  auto model = models::create_model("opt-tiny", 3);
  model->eval();  // a new model is in training mode (as in torch) and opt-tiny has dropout
  auto* opt = dynamic_cast<models::OPT*>(model.get());
  REQUIRE(opt);
  // The padding row starts at zero.
  Tensor pad_row = opt->model->decoder->embed_tokens->weight.value().select(0, 1);
  CHECK(ops::max_abs_diff(pad_row, Tensor::zeros(pad_row.shape())) == 0);

  TempDir dir;
  models::save_pretrained(*model, dir.str());
  models::ModelConfig back = models::load_config(dir / "config.json");
  CHECK(back.arch == models::Arch::opt);
  CHECK(back.word_embed_proj_dim == model->config().word_embed_proj_dim);
  auto again = models::load_pretrained(dir.str());
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{2, 100, 200, 300}, {1, 4});
  CHECK(ops::max_abs_diff(model->forward(ids).value(), again->forward(ids).value()) == 0);
}

TEST_CASE("opt config.json errors name the file and the key") {
  nlohmann::json good = nlohmann::json::parse(read_text(fixtures_dir() + "/opt_tiny_postln/config.json"));
  auto parse = [](const nlohmann::json& j) { return models::parse_config(j.dump(), "opt/config.json"); };
  models::ModelConfig c = parse(good);
  CHECK(c.word_embed_proj_dim == 32);
  CHECK(c.pad_token_id == 1);

  nlohmann::json j = good;
  j.erase("ffn_dim");
  CHECK(contains(error_of([&] { parse(j); }), "opt/config.json: missing key \"ffn_dim\""));
  j = good;
  j["do_layer_norm_before"] = 1;
  CHECK(contains(error_of([&] { parse(j); }), "\"do_layer_norm_before\" must be true or false"));
  j = good;
  j["hidden_size"] = -64;
  CHECK(contains(error_of([&] { parse(j); }), "\"hidden_size\" must be positive"));
  j = good;
  j["activation_function"] = "gelu";
  CHECK(contains(error_of([&] { parse(j); }), "activation_function \"gelu\""));
  j = good;
  j["word_embed_proj_dim"] = nullptr;  // HF: null means hidden_size
  CHECK(parse(j).word_embed_proj_dim == 64);
}

TEST_CASE("opt: a checkpoint with project_in/out shapes disagreeing with config.json") {
  Fixture f("opt_tiny_postln");
  TempDir dir;
  fs::copy_file(f.dir + "/model.safetensors", dir / "model.safetensors");
  nlohmann::json config = nlohmann::json::parse(read_text(f.dir + "/config.json"));
  config["word_embed_proj_dim"] = 16;
  write_text(dir / "config.json", config.dump());
  std::string e = error_of([&] { models::load_pretrained(dir.str()); });
  CHECK(contains(e, "model.decoder.embed_tokens.weight"));
  CHECK(contains(e, "model.decoder.project_in.weight"));
  CHECK(contains(e, "model.decoder.project_out.weight"));
  CHECK(contains(e, "(256, 32)"));
}
