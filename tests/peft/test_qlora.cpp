// LoRA on an NF4 base (QLoRA) against HF PEFT + bitsandbytes
// (reference/make_qlora_fixture.py, tests/fixtures/peft/<model>_qlora/).
// transformers 4.46.3 does not load a 4-bit model with bitsandbytes 0.50 on
// the CPU, so HF's side is the f32 model holding bitsandbytes' dequantized
// NF4 weights (bf16-rounded embeddings): what Linear4bit computes with at
// compute dtype f32.
//
// Logits agree within 1e-4 and the adapter's gradients within 1e-3, both with
// bitsandbytes' own quantized bytes loaded into our Linears and with the
// checkpoint quantized here, whose 4-bit and 8-bit codes are bitsandbytes'
// byte for byte. Only the offset (the mean absmax) may differ in its last
// bits: bitsandbytes takes torch's float32 sum, not a correctly rounded one.
#include <doctest/doctest.h>

#include <map>

#include "helpers.h"
#include "models/load.h"
#include "models/nf4_base.h"
#include "models/tokenizer.h"
#include "nn/linear.h"
#include "nn/nf4_weights.h"
#include "peft/peft_model.h"

namespace mp::test {
namespace {

using ag::Variable;

struct QloraCase {
  std::string dir, adapter_dir;
  nlohmann::json info;
  explicit QloraCase(const std::string& name)
      : dir(fixtures_dir() + "/peft/" + name), info(read_json(dir + "/reference.json")) {
    adapter_dir = fixtures_dir() + "/peft/" + info["adapter_case"].get<std::string>();
  }
  nn::SafetensorsFile ref() const { return nn::SafetensorsFile::open(dir + "/reference.safetensors"); }
  nn::SafetensorsFile bnb() const { return nn::SafetensorsFile::open(dir + "/nf4_weights.safetensors"); }
};

nn::Linear& linear_at(models::CausalLM& m, const std::string& path) {
  auto* l = dynamic_cast<nn::Linear*>(m.find_module(path));
  REQUIRE_MESSAGE(l != nullptr, "no Linear at " << path);
  return *l;
}

// The base with an NF4 base: quantized here, or holding bitsandbytes' bytes.
std::shared_ptr<models::CausalLM> nf4_base(const QloraCase& c, bool bnb_bytes) {
  auto base = std::shared_ptr<models::CausalLM>(
      models::load_pretrained(fixtures_dir() + "/" + c.info["base_model_dir"].get<std::string>()));
  base->freeze();
  models::quantize_base_nf4(*base);
  CHECK(models::base_storage(*base).nf4_matrices == int64_t(c.info["nf4_modules"].size()));
  if (bnb_bytes) {
    const nn::SafetensorsFile bnb = c.bnb();
    for (const auto& path : c.info["nf4_modules"]) {
      nn::Linear& l = linear_at(*base, path);
      l.set_nf4_weight(std::make_shared<const Nf4Tensor>(
          nn::load_nf4(bnb, path.get<std::string>() + ".weight", {l.out_features(), l.in_features()})));
    }
  }
  return base;
}

struct Errors {
  double logits = 0, loss = 0, grads = 0;  // max abs, abs, max relative
};

// HF's adapter with its initial values on `base`: logits, loss and gradients against the reference.
Errors compare_with_hf(const QloraCase& c, std::shared_ptr<models::CausalLM> base) {
  peft::PeftConfig config = peft::load_adapter_config(c.adapter_dir + "/adapter_config.json");
  config.inference_mode = false;
  models::Tokenizer tok = models::Tokenizer::from_dir(data_dir() + "/gpt2-tokenizer");
  auto pm = peft::get_peft_model(std::move(base), config, "default", &tok);
  std::map<std::string, Variable> ours;
  for (auto& [n, p] : pm->named_parameters()) ours[n] = p;
  const nn::SafetensorsFile init = nn::SafetensorsFile::open(c.adapter_dir + "/reference.safetensors");
  for (const auto& hf : c.info["trainable_parameters"]) {
    REQUIRE(ours.count(our_name(hf)));
    init.load_into("param." + hf.get<std::string>(), ours.at(our_name(hf)).value());
  }
  pm->eval();
  const nn::SafetensorsFile ref = c.ref();
  Tensor ids = ref.load("input_ids", DType::i32, Tag::workspace);
  Tensor labels = ref.load("labels", DType::i32, Tag::workspace);
  Errors e;
  e.logits = ops::max_abs_diff(pm->forward(ids).value(), ref.load("logits", DType::f32, Tag::workspace));
  Variable loss = pm->loss(ids, labels);
  e.loss = std::abs(loss.item() - ref.load("loss", DType::f32, Tag::workspace).item());
  loss.backward();
  for (const auto& hf : c.info["trainable_parameters"]) {
    const Variable& p = ours.at(our_name(hf));
    REQUIRE(p.grad().defined());
    e.grads = std::max(e.grads, rel_error(p.grad(), ref.load("grad." + hf.get<std::string>(), DType::f32, Tag::workspace)));
  }
  return e;
}

TEST_CASE("QLoRA with bitsandbytes' NF4 bytes: logits within 1e-4, LoRA gradients within 1e-3 of HF PEFT") {
  for (const char* name : {"gpt2_qlora", "opt_qlora"}) {
    SUBCASE(name) {
      QloraCase c(name);
      const Errors e = compare_with_hf(c, nf4_base(c, true));
      MESSAGE(name << ": logits " << e.logits << ", loss " << e.loss << ", gradients (relative) " << e.grads);
      CHECK(e.logits < 1e-4);
      CHECK(e.loss < 1e-5);
      CHECK(e.grads < 1e-3);
    }
  }
}

TEST_CASE("QLoRA quantized here: bitsandbytes' codes and absmax codes; logits within 1e-4, gradients within 1e-3") {
  for (const char* name : {"gpt2_qlora", "opt_qlora"}) {
    SUBCASE(name) {
      QloraCase c(name);
      auto ours = nf4_base(c, false);
      const nn::SafetensorsFile bnb = c.bnb();
      int64_t absmax_codes = 0, absmax_differ = 0;
      for (const auto& path : c.info["nf4_modules"]) {
        CAPTURE(path);
        const nn::Linear& l = linear_at(*ours, path);
        const Nf4Tensor theirs =
            nn::load_nf4(bnb, path.get<std::string>() + ".weight", {l.out_features(), l.in_features()}, Tag::workspace);
        CHECK(l.nf4_weight()->packed.to_floats() == theirs.packed.to_floats());  // every 4-bit code
        std::vector<float> a = l.nf4_weight()->absmax.to_floats(), b = theirs.absmax.to_floats();
        absmax_codes += int64_t(a.size());
        for (size_t i = 0; i < a.size(); ++i) absmax_differ += a[i] != b[i];
        CHECK(std::abs(l.nf4_weight()->offset - theirs.offset) <= 2e-7f * std::abs(theirs.offset));  // 2 ulp
      }
      CHECK(absmax_codes > 0);
      CHECK(absmax_differ == 0);
      const Errors e = compare_with_hf(c, ours);
      MESSAGE(name << ": logits " << e.logits << ", loss " << e.loss << ", gradients (relative) " << e.grads);
      CHECK(e.logits < 1e-4);
      CHECK(e.loss < 1e-5);
      CHECK(e.grads < 1e-3);
    }
  }
}

}  // namespace
}  // namespace mp::test
