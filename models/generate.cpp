#include "models/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "autograd/ops.h"
#include "engine/error.h"

namespace mp::models {

// prompt_len counts the prefill's virtual tokens too.
static void check_options(const CausalLM& model, size_t prompt_len, const GenerateOptions& o) {
  if (prompt_len == 0) fail("generate: the prompt is empty");
  if (o.max_new_tokens < 0) fail("generate: max_new_tokens must be >= 0, not {}", o.max_new_tokens);
  if (o.do_sample && !(o.temperature > 0.f)) fail("generate: temperature must be > 0, not {}", o.temperature);
  if (o.top_k < 0) fail("generate: top_k must be >= 0, not {}", o.top_k);
  if (!(o.top_p > 0.f && o.top_p <= 1.f)) fail("generate: top_p must be in (0, 1], not {}", o.top_p);
  const size_t limit = size_t(model.max_positions());
  if (prompt_len > limit)
    fail("generate: the prompt has {} tokens, longer than the model's {} positions", prompt_len, limit);
  if (prompt_len + size_t(o.max_new_tokens) > limit)
    fail("generate: prompt ({} tokens) + max_new_tokens ({}) = {} exceeds the model's {} positions", prompt_len,
         o.max_new_tokens, prompt_len + size_t(o.max_new_tokens), limit);
}

int32_t pick_token(std::span<const float> logits, const GenerateOptions& o, double uniform) {
  const size_t V = logits.size();
  if (!o.do_sample) return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());

  // Candidates, most likely first (ties: lower id first, for determinism).
  std::vector<int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
  size_t keep = o.top_k > 0 ? std::min(V, size_t(o.top_k)) : V;

  // Softmax of logits / temperature over the kept candidates.
  std::vector<double> prob(keep);
  const double top = double(logits[size_t(order[0])]) / o.temperature;
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += prob[i] = std::exp(double(logits[size_t(order[i])]) / o.temperature - top);
  for (double& p : prob) p /= total;

  // Nucleus: the shortest run of top tokens whose probability reaches top_p.
  if (o.top_p < 1.f) {
    double cumulative = 0;
    size_t n = 0;
    while (n < keep && cumulative < o.top_p) cumulative += prob[n++];
    keep = std::max<size_t>(n, 1);
    total = std::accumulate(prob.begin(), prob.begin() + std::ptrdiff_t(keep), 0.0);
  } else {
    total = 1.0;
  }

  // Inverse CDF on the renormalised probabilities.
  double target = uniform * total, cumulative = 0;
  for (size_t i = 0; i < keep; ++i) {
    cumulative += prob[i];
    if (target < cumulative) return order[i];
  }
  return order[keep - 1];
}

// The logits (V) of the last position of hidden (1, T, E).
static std::vector<float> last_logits(const CausalLM& model, const Variable& hidden) {
  const int64_t T = hidden.size(1);
  Variable last = ag::narrow(hidden, 1, T - 1, 1);  // (1, 1, E)
  return model.logits(last).value().to_floats();    // (1, 1, V) -> V floats
}

std::vector<int32_t> generate(CausalLM& model, std::span<const int32_t> prompt, const GenerateOptions& o,
                              const Prefill& prefill) {
  check_options(model, prompt.size() + size_t(prefill.length()), o);
  ag::NoGrad no_grad;
  // Eval mode (no dropout) for the duration, the caller's mode restored even on an error.
  struct EvalScope {
    CausalLM& model;
    bool was_training;
    explicit EvalScope(CausalLM& m) : model(m), was_training(m.is_training()) { model.eval(); }
    ~EvalScope() { model.train(was_training); }
    EvalScope(const EvalScope&) = delete;
    EvalScope& operator=(const EvalScope&) = delete;
  } eval_scope(model);
  const Device device = model.token_embedding_weight().value().device();

  std::vector<int32_t> ids(prompt.begin(), prompt.end());
  std::mt19937_64 rng(o.seed);
  // 53 random bits -> a double in [0, 1), the same on every platform
  // (std::uniform_real_distribution is not).
  auto uniform = [&rng] { return double(rng() >> 11) * 0x1.0p-53; };

  KVCache cache(model.num_layers());
  ForwardOptions opt;
  if (o.use_cache) opt.cache = &cache;

  // The first step sees the whole prompt; with the cache, later steps see only the newest token.
  Tensor input = Tensor::from_vector(ids, {1, int64_t(ids.size())}).to(device);  // (1, T)
  for (int step = 0; step < o.max_new_tokens; ++step) {
    // The prefill goes in front of the first call; with the cache it is kept
    // there, without it every call needs it again.
    const bool prefill_now = step == 0 || !o.use_cache;
    opt.prefix = prefill_now && !prefill.prefix.empty() ? &prefill.prefix : nullptr;
    opt.inputs_embeds = prefill_now && prefill.virtual_embeds.defined()
                            ? ag::cat({prefill.virtual_embeds, model.embed_tokens(input)}, 1)  // (1, P + T, E)
                            : Variable();
    Variable hidden = opt.inputs_embeds.defined() ? model.hidden_states(Tensor(), opt) : model.hidden_states(input, opt);
    std::vector<float> logits = last_logits(model, hidden);  // (V)
    int32_t next = pick_token(logits, o, o.do_sample ? uniform() : 0.0);
    ids.push_back(next);
    if (next == o.eos_token_id) break;
    input = o.use_cache ? Tensor::from_vector(std::vector<int32_t>{next}, {1, 1})  // (1, 1)
                        : Tensor::from_vector(ids, {1, int64_t(ids.size())});     // (1, T + step + 1)
    input = input.to(device);
  }
  return ids;
}

}  // namespace mp::models
