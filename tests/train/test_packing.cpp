// --packing (train/data/pairs.h, pack_batch): several examples per row, each with
// its own positions and attention (segment_ids). Packed rows must give every
// example the loss it has alone, unpacked. (Training with --packing, its
// resume and its refusals: test_pairs.cpp.)
#include <doctest/doctest.h>

#include "models/load.h"
#include "peft/peft_model.h"
#include "tests/support/minipeft.h"
#include "tests/peft/helpers.h"
#include "train/data/pairs.h"
#include "train/trainer.h"

using namespace mp;

namespace {

std::vector<int32_t> values(const Tensor& t) {
  Tensor c = t.contiguous();
  return {c.data<int32_t>(), c.data<int32_t>() + c.numel()};
}

// Six examples of mixed lengths (3 to 11 tokens), ids below the tiny vocabulary.
std::vector<train::Example> mixed_examples(int32_t eos) {
  std::vector<train::Example> ex;
  for (int i = 0; i < 6; ++i) {
    std::vector<int32_t> p, c;
    for (int j = 0; j < 1 + (i * 5) % 7; ++j) p.push_back(int32_t(3 + (i * 31 + j * 17) % 240));
    for (int j = 0; j < 1 + (i * 3) % 4; ++j) c.push_back(int32_t(3 + (i * 13 + j * 29) % 240));
    ex.push_back(train::make_example(p, c, eos, 64));
  }
  return ex;
}

std::vector<const train::Example*> pointers(const std::vector<train::Example>& v) {
  std::vector<const train::Example*> out;
  for (const train::Example& e : v) out.push_back(&e);
  return out;
}

}  // namespace

TEST_CASE("pack_batch: examples in order, a new row when one does not fit, positions and segments per example") {
  const std::vector<int32_t> p1{1, 2}, c1{3}, p2{4}, c2{5, 6}, none{}, c3{7};
  train::Example a = train::make_example(p1, c1, 9, 64), b = train::make_example(p2, c2, 9, 64),
                 c = train::make_example(none, c3, 9, 64);
  const train::Example* rows[] = {&a, &b, &c};
  train::Batch batch = train::pack_batch(rows, 6, 0);
  REQUIRE(batch.ids.shape() == Shape{2, 6});
  CHECK(values(batch.ids) == std::vector<int32_t>{1, 2, 3, 9, 0, 0, /**/ 4, 5, 6, 9, 7, 9});
  CHECK(values(batch.labels) == std::vector<int32_t>{-100, -100, 3, 9, -100, -100, /**/ -100, 5, 6, 9, -100, 9});
  CHECK(values(batch.attention_mask) == std::vector<int32_t>{1, 1, 1, 1, 0, 0, /**/ 1, 1, 1, 1, 1, 1});
  CHECK(values(batch.position_ids) == std::vector<int32_t>{0, 1, 2, 3, 0, 0, /**/ 0, 1, 2, 3, 0, 1});
  CHECK(values(batch.segment_ids) == std::vector<int32_t>{0, 0, 0, 0, -1, -1, /**/ 0, 0, 0, 0, 1, 1});
}

TEST_CASE("packed rows give each example its unpacked loss (GPT-2, OPT, LoRA), and the same gradients") {
  struct Case {
    const char* base;
    const char* adapter;
    int32_t eos, pad;
  };
  for (const Case& c : {Case{"gpt2_tiny", "", 255, 0}, Case{"opt_tiny", "", 2, 1}, Case{"gpt2_tiny", "gpt2_lora", 255, 0},
                        Case{"opt_tiny", "opt_lora", 2, 1}}) {
    CAPTURE(c.base);
    CAPTURE(c.adapter);
    train::TrainedModel m;
    m.base = models::load_pretrained(test::fixtures_dir() + "/" + c.base);
    if (*c.adapter) m.peft = peft::load_peft_model(m.base, test::fixtures_dir() + "/peft/" + c.adapter, "default", true);
    m.module().eval();
    const std::vector<train::Example> ex = mixed_examples(c.eos);
    const std::vector<const train::Example*> all = pointers(ex);
    const train::Batch packed = train::pack_batch(all, 24, c.pad);
    REQUIRE(packed.ids.size(0) < int64_t(ex.size()));  // some rows do hold several examples
    double worst = 0;
    for (size_t i = 0; i < ex.size(); ++i) {
      const train::Example* one[] = {&ex[i]};
      const double alone = m.loss(train::pad_batch(one, c.pad)).item();
      // The packed batch with every other example's labels ignored. Example
      // i's tokens are its segment in its row: the last segment when the
      // first i + 1 examples are packed alone.
      const int64_t T = 24;
      const train::Batch upto = train::pack_batch(std::span(all).first(i + 1), T, c.pad);
      const int64_t row = upto.ids.size(0) - 1;
      const int32_t* upto_segments = upto.segment_ids.data<int32_t>() + row * T;
      const int32_t segment = *std::max_element(upto_segments, upto_segments + T);
      train::Batch only = packed;
      only.labels = packed.labels.clone();
      const std::vector<int32_t> seg = values(packed.segment_ids);
      for (int64_t k = 0; k < only.labels.numel(); ++k)
        if (k / T != row || seg[size_t(k)] != segment) only.labels.data<int32_t>()[k] = -100;
      const double in_pack = m.loss(only).item();
      worst = std::max(worst, std::abs(in_pack - alone));
      CHECK(std::abs(in_pack - alone) <= 1e-5);
    }
    MESSAGE(std::string(c.base) << " " << std::string(c.adapter) << ": per-example loss, packed vs alone, max abs difference " << worst);
    // All together: the packed loss is the padded batch's (both token-weighted).
    ag::Variable padded = m.loss(train::pad_batch(all, c.pad));
    CHECK(m.loss(packed).item() == doctest::Approx(padded.item()).epsilon(1e-5));
    if (!m.peft) continue;
    padded.backward();
    std::vector<Tensor> want;
    for (auto& [name, p] : m.peft->named_parameters())
      if (p.requires_grad()) want.push_back(p.grad().clone()), p.zero_grad();
    m.loss(packed).backward();
    size_t i = 0;
    for (auto& [name, p] : m.peft->named_parameters())
      if (p.requires_grad()) CHECK_MESSAGE(test::rel_error(p.grad(), want[i++]) < 1e-4, name);
  }
}

TEST_CASE("packed batches: training rows are full, held-out rows cover every example once") {
  train::Examples ex;
  const std::vector<train::Example> six = mixed_examples(255);
  for (int i = 0; i < 5; ++i) ex.examples.insert(ex.examples.end(), six.begin(), six.end());
  train::PairsDataset data(ex, 0.5, 0, "f.jsonl");  // 15 training, 15 held out
  data.set_packing(16);
  for (int step = 0; step < 5; ++step) {
    train::Batch b = data.train_batch(3, 1, step);
    CHECK(b.ids.shape() == Shape{3, 16});
  }
  int64_t examples = 0;
  for (const train::Batch& b : data.val_batches(2, 100)) {
    CHECK(b.ids.size(0) <= 2);
    for (int32_t id : values(b.ids)) examples += id == 255;  // one end token per example
  }
  CHECK(examples == 15);
}
