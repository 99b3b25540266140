// One training step under the ledger, shared by the memory tests and
// bench/memory_report.cpp: build GPT-2 (random weights) with or without an
// adapter, reset the ledger's peaks, run forward + backward + AdamW once,
// and return the peaks per category.
#pragma once
#include <optional>

#include "engine/memory.h"
#include "engine/ops.h"
#include "models/load.h"
#include "nn/adamw.h"
#include "peft/memory_report.h"
#include "peft/peft_model.h"

namespace mp::test {

// Token ids (B, T) i32, a fixed pattern below the vocabulary size.
inline Tensor pattern_ids(int64_t B, int64_t T, int vocab) {
  std::vector<int32_t> v(size_t(B * T));
  for (size_t i = 0; i < v.size(); ++i) v[i] = int32_t((i * 7919 + 13) % size_t(vocab));
  return Tensor::from_vector(v, {B, T}, Tag::workspace);
}

inline peft::MemoryBytes measure_training_step(const models::ModelConfig& config,
                                               const std::optional<peft::PeftConfig>& method, int64_t B, int64_t T) {
  std::shared_ptr<models::CausalLM> model = models::make_model(config, 1);
  std::shared_ptr<peft::PeftModel> pm;
  if (method) pm = peft::get_peft_model(model, *method);
  nn::Module& trained = pm ? static_cast<nn::Module&>(*pm) : *model;
  trained.train();
  nn::AdamW opt(trained.named_parameters());
  Tensor ids = pattern_ids(B, T, config.vocab_size);
  Ledger::instance().reset_peaks();
  {
    ag::Variable loss = pm ? pm->loss(ids, ids) : model->loss(ids, ids);
    loss.backward();
  }
  opt.step();
  return peft::measured_peaks();
}

}  // namespace mp::test
