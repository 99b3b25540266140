#include "train/pairs_eval.h"

#include <algorithm>
#include <cmath>

#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "train/adapters.h"

namespace mp::train {

namespace {

// Next-token logits of a padded batch (B, T, V), with the attention mask;
// prompt tuning's virtual positions (in front) dropped. rows: each row's adapter, or null.
Tensor batch_logits(const TrainedModel& m, const Batch& b, const std::vector<std::string>* rows) {
  ag::AutocastScope scope = m.autocast();
  const int64_t T = b.ids.size(1);
  if (m.peft) {
    ag::Variable logits = rows ? m.peft->forward(b.ids, &b.attention_mask, *rows)
                               : m.peft->forward(b.ids, &b.attention_mask);  // (B, P+T, V) or (B, T, V)
    return ag::narrow(logits, 1, logits.size(1) - T, T).value();
  }
  models::ForwardOptions opt;
  opt.attention_mask = &b.attention_mask;
  return m.base->forward(b.ids, opt).value();
}

// -log softmax(row)[target], in double.
double nll(const float* row, int64_t V, int32_t target) {
  const float top = *std::max_element(row, row + V);
  double sum = 0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - top);
  return std::log(sum) + top - double(row[target]);
}

}  // namespace

PairsScore score_pairs(const TrainedModel& m, const std::vector<const Example*>& examples, int64_t B, int32_t pad_id,
                       bool mixed) {
  ag::NoGrad no_grad;
  const bool was_training = m.module().is_training();
  m.module().eval();
  PairsScore score;
  for (size_t first = 0; first < examples.size(); first += size_t(B)) {
    const std::span<const Example* const> rows(examples.data() + first, std::min(examples.size() - first, size_t(B)));
    const Batch batch = pad_batch(rows, pad_id).to(m.device());
    std::vector<std::string> names;
    for (const Example* e : rows) names.push_back(e->adapter);
    if (mixed) names = row_adapters(names, m, "pairs");
    const std::vector<float> logits = batch_logits(m, batch, mixed ? &names : nullptr).to_floats();  // (B, T, V)
    const int64_t T = batch.ids.size(1), V = int64_t(logits.size()) / (int64_t(rows.size()) * T);
    for (size_t r = 0; r < rows.size(); ++r) {
      const Example& e = *rows[r];
      bool exact = !e.cut;
      // Token t is predicted from position t - 1.
      for (int64_t t = std::max<int64_t>(e.prompt_tokens, 1); t < int64_t(e.ids.size()); ++t) {
        const float* row = logits.data() + (int64_t(r) * T + t - 1) * V;
        const int32_t target = e.ids[size_t(t)];
        score.nll += nll(row, V, target);
        ++score.tokens;
        exact = exact && std::max_element(row, row + V) - row == target;
      }
      if (e.prompt_tokens > 0) {
        ++score.examples;
        score.exact += exact;
      }
    }
  }
  m.module().train(was_training);
  return score;
}

}  // namespace mp::train
