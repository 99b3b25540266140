// nn::Module: dotted names, freezing by pattern, counting, finding, tying.
#include <doctest/doctest.h>

#include "nn/activations.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"

using namespace mp;
using namespace mp::nn;

namespace {

struct Attn : Module {
  std::shared_ptr<Linear> c_attn = add_module("c_attn", std::make_shared<Linear>(4, 12, true, Layout::conv1d));
  std::shared_ptr<Linear> c_proj = add_module("c_proj", std::make_shared<Linear>(4, 4, true, Layout::conv1d));
};

struct Block : Module {
  std::shared_ptr<LayerNorm> ln_1 = add_module("ln_1", std::make_shared<LayerNorm>(4));
  std::shared_ptr<Attn> attn = add_module("attn", std::make_shared<Attn>());
  std::shared_ptr<Dropout> drop = add_module("drop", std::make_shared<Dropout>(0.1f));
};

struct Tiny : Module {
  std::shared_ptr<Embedding> wte = add_module("wte", std::make_shared<Embedding>(10, 4));
  std::shared_ptr<Block> b0 = add_module("h0", std::make_shared<Block>());
  std::shared_ptr<Linear> lm_head = add_module("lm_head", std::make_shared<Linear>(4, 10, false));
  Tiny() { add_buffer("bias_mask", Tensor::zeros({2, 2})); }
};

std::vector<std::string> names_of(const std::vector<NamedParameter>& ps) {
  std::vector<std::string> out;
  for (auto& [n, v] : ps) out.push_back(n);
  return out;
}

}  // namespace

TEST_CASE("name_matches: globs") {
  CHECK(name_matches("h.0.attn.c_attn.weight", "*"));
  CHECK(name_matches("h.0.attn.c_attn.weight", "h.0.*"));
  CHECK_FALSE(name_matches("h.10.attn.c_attn.weight", "h.1.*"));
  CHECK(name_matches("h.0.attn.c_attn.weight", "*.weight"));
  CHECK_FALSE(name_matches("h.0.attn.c_attn.bias", "*.weight"));
  CHECK(name_matches("h.0.attn.c_attn.weight", "h.*.c_attn.*"));
  CHECK(name_matches("h.0.attn.c_attn.weight", "h.0.attn.c_attn.weight"));
  CHECK_FALSE(name_matches("h.0.attn.c_attn.weight", "h.0.attn.c_attn"));
  CHECK(name_matches("", "*"));
  CHECK_FALSE(name_matches("", "a"));
  CHECK(name_matches("abcabd", "*abd"));
}

TEST_CASE("Module: nested dotted names, in registration order") {
  Block b;
  CHECK(names_of(b.named_parameters()) ==
        std::vector<std::string>{"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                                 "attn.c_proj.weight", "attn.c_proj.bias"});
  CHECK(names_of(b.named_parameters("h.3"))[2] == "h.3.attn.c_attn.weight");
  CHECK(b.attn->c_attn->weight.shape() == Shape{4, 12});  // conv1d: (in, out)
  CHECK(b.attn->c_attn->weight.value().tag() == Tag::weights);
  CHECK(b.num_parameters() == 4 + 4 + 48 + 12 + 16 + 4);

  auto mods = b.named_modules();
  REQUIRE(mods.size() == 6);
  CHECK(mods[0].first == "");
  CHECK(mods[2].first == "attn");
  CHECK(mods[3].first == "attn.c_attn");
  CHECK(b.find_module("attn.c_proj") == b.attn->c_proj.get());
  CHECK(b.find_module("") == &b);
  CHECK(b.find_module("attn.nope") == nullptr);
  CHECK(b.find_module("attn.c_proj.weight") == nullptr);
}

TEST_CASE("Module: freeze and unfreeze by pattern; trainable count") {
  Block b;
  CHECK(b.freeze() == 6);
  CHECK(b.num_parameters(true) == 0);
  CHECK(b.unfreeze("*.bias") == 3);
  CHECK(b.num_parameters(true) == 4 + 12 + 4);
  CHECK(b.unfreeze("attn.c_attn.*") == 2);
  CHECK(b.num_parameters(true) == 4 + 12 + 4 + 48);
  CHECK(b.attn->c_attn->weight.requires_grad());
  CHECK_FALSE(b.ln_1->weight.requires_grad());
  CHECK(b.set_requires_grad("nothing.matches", true) == 0);
}

TEST_CASE("Module: tied parameters are listed once; buffers are listed") {
  Tiny t;
  auto names = names_of(t.named_parameters());
  CHECK(names.front() == "wte.weight");
  CHECK(names.back() == "lm_head.weight");
  auto bufs = t.named_buffers();
  REQUIRE(bufs.size() == 1);
  CHECK(bufs[0].first == "bias_mask");

  // Tying: one Variable registered under two names (GPT-2's lm_head and wte).
  struct Tied : Module {
    std::shared_ptr<Embedding> wte = add_module("wte", std::make_shared<Embedding>(10, 4));
    Variable head = add_parameter("lm_head_weight", wte->weight);
  } tied;
  // Own parameters come before children's, so the first name reached is the module's own.
  CHECK(names_of(tied.named_parameters()) == std::vector<std::string>{"lm_head_weight"});
  CHECK(tied.num_parameters() == 40);
}

TEST_CASE("Module: train/eval reach every child; zero_grad drops gradients") {
  Block b;
  CHECK(b.drop->is_training());
  b.eval();
  CHECK_FALSE(b.drop->is_training());
  CHECK_FALSE(b.attn->c_proj->is_training());
  b.train();
  CHECK(b.attn->c_proj->is_training());

  b.ln_1->weight.impl()->grad = Tensor::full({4}, 1.0, DType::f32, kCPU, Tag::grads);
  b.zero_grad();
  CHECK_FALSE(b.ln_1->weight.grad().defined());
}

TEST_CASE("add_parameter retags storage as weights unless weights or adapter") {
  struct M : Module {
    Variable a = add_parameter("a", Tensor::zeros({3}, DType::f32, kCPU, Tag::activations));
    Variable b = add_parameter("b", Tensor::zeros({3}, DType::f32, kCPU, Tag::adapter));
  } m;
  CHECK(m.a.value().tag() == Tag::weights);
  CHECK(m.b.value().tag() == Tag::adapter);
}
