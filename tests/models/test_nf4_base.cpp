// QLoRA's base (models/nf4_base.h) on the tiny GPT-2 and OPT: which weights
// become NF4 and which bf16, the logits against the f32 model holding the
// same (dequantized) values, the refusal of a trainable base, and the round
// trip back to f32.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/error.h"
#include "models/load.h"
#include "models/nf4_base.h"
#include "nn/linear.h"

using namespace mp;

namespace {

Tensor some_ids(int vocab) {
  std::vector<int32_t> v;
  for (int i = 0; i < 16; ++i) v.push_back(int32_t((i * 37 + 11) % vocab));
  return Tensor::from_vector(v, {2, 8});
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<float> x = a.to_floats(), y = b.to_floats();
  REQUIRE(x.size() == y.size());
  double d = 0;
  for (size_t i = 0; i < x.size(); ++i) d = std::max(d, std::abs(double(x[i]) - y[i]));
  return d;
}

}  // namespace

TEST_CASE("nf4 base: a trainable weight is refused, naming it") {
  auto model = models::create_model("gpt2-tiny", 3);
  try {
    models::quantize_base_nf4(*model);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("transformer.h.0.attn.c_attn.weight is trainable") != std::string::npos);
  }
  CHECK(models::base_storage(*model).nf4_matrices == 0);  // nothing was changed
}

TEST_CASE("nf4 base: Linear weights in NF4, embeddings in bf16, the rest f32; logits as the dequantized model's") {
  for (const char* name : {"gpt2-tiny", "opt-tiny"}) {
    INFO(name);
    auto q = models::create_model(name, 5), ref = models::create_model(name, 5);
    q->eval();  // no dropout
    ref->eval();
    q->freeze();
    models::quantize_base_nf4(*q);
    const models::BaseStorage s = models::base_storage(*q);
    CHECK(s.nf4_matrices == int64_t(q->num_layers()) * (std::string(name) == "gpt2-tiny" ? 4 : 6));
    CHECK(q->token_embedding_weight().value().dtype() == DType::bf16);
    for (const auto& [pname, p] : q->named_parameters())
      if (p.value().dtype() == DType::f32) CHECK(p.value().dim() == 1);  // layer norms and biases only

    // The reference: an f32 model holding exactly the values q computes with.
    ref->freeze();
    models::quantize_base_nf4(*ref);
    models::dequantize_base_nf4(*ref);
    CHECK(models::base_storage(*ref).nf4_matrices == 0);
    CHECK(ref->token_embedding_weight().value().dtype() == DType::f32);
    Tensor ids = some_ids(q->vocab_size());
    CHECK(max_abs_diff(q->forward(ids).value(), ref->forward(ids).value()) < 1e-4);
  }
}
