#include "peft/memory_report.h"

#include <regex>

#include "engine/error.h"
#include "engine/memory.h"
#include "models/load.h"
#include "nn/adamw.h"
#include "peft/peft_model.h"

namespace mp::peft {

namespace {

constexpr size_t kF32 = 4;

// PEFT's target rule (see peft_model.cpp): the name, or a suffix after a dot.
bool targets(const LoraConfig& c, const std::string& module_name) {
  if (!c.target_modules_regex.empty()) return std::regex_match(module_name, std::regex(c.target_modules_regex));
  for (const std::string& t : c.target_modules)
    if (module_name == t || module_name.ends_with("." + t)) return true;
  return false;
}

// One GPT-2 block's linear layers: name within the block, in, out.
struct LinearShape {
  const char* name;
  int64_t in, out;
};

}  // namespace

MemoryBytes predict_training_memory(const models::ModelConfig& m, const std::optional<PeftConfig>& peft,
                                    int64_t B, int64_t T, DType weight_dtype) {
  if (m.arch != models::Arch::gpt2) fail("the memory report models GPT-2 only, not {}", models::arch_name(m.arch));
  const int64_t L = m.num_layers, C = m.hidden_size, F = m.ffn_dim, H = m.num_heads, V = m.vocab_size;
  const LinearShape linears[] = {{"attn.c_attn", C, 3 * C}, {"attn.c_proj", C, C}, {"mlp.c_fc", C, F}, {"mlp.c_proj", F, C}};

  // Parameters (elements): matrices (embedding tables, linear weights) and
  // vectors (biases, layer norms).
  int64_t matrices = V * C + int64_t(m.max_positions) * C;  // wte, wpe
  int64_t vectors = 2 * C + L * 4 * C;                       // ln_f; ln_1, ln_2 weight and bias
  for (const LinearShape& l : linears) {
    matrices += L * l.in * l.out;
    vectors += L * l.out;
  }
  const int64_t base = matrices + vectors;

  const bool full = !peft.has_value();
  const LoraConfig* lora = full ? nullptr : peft->as_lora();
  const PromptTuningConfig* prompt = full ? nullptr : peft->as_prompt_tuning();
  const PrefixTuningConfig* prefix = full ? nullptr : peft->as_prefix_tuning();
  const int64_t P = prompt ? prompt->num_virtual_tokens : prefix ? prefix->num_virtual_tokens : 0;

  int64_t adapter = 0;
  if (prompt) adapter = P * C;
  if (prefix) {
    const int64_t width = L * 2 * C, hidden = prefix->encoder_hidden_size > 0 ? prefix->encoder_hidden_size : C;
    adapter = prefix->prefix_projection ? P * C + C * hidden + hidden + hidden * width + width : P * width;
  }
  auto is_lora = [&](int64_t layer, const LinearShape& l) {
    return lora && targets(*lora, "transformer.h." + std::to_string(layer) + "." + l.name);
  };
  if (lora)
    for (int64_t layer = 0; layer < L; ++layer)
      for (const LinearShape& l : linears)
        if (is_lora(layer, l)) adapter += int64_t(lora->r) * (l.in + l.out);
  const int64_t trainable = full ? base : adapter;

  // Activations (elements), following the save rules in the header.
  const int64_t Tq = T + (prompt ? P : 0);                 // positions every layer runs over
  const int64_t N = B * Tq;                                // token rows
  const int64_t S = Tq + (prefix ? P : 0);                 // keys per query
  const int64_t r = lora ? lora->r : 0;
  int64_t act = 0;
  bool grad_flows = full || prompt;  // does the residual stream entering this layer need a gradient?
  for (int64_t layer = 0; layer < L; ++layer) {
    if (grad_flows) act += N * C + 2 * N;                      // ln_1: x, mean, rstd
    for (const LinearShape& l : linears) {
      if (full) act += N * l.in;                               // linear keeps x for dW
      if (is_lora(layer, l)) act += N * l.in + N * r;          // lora_down keeps x; lora_B keeps (N, r)
    }
    // q, k, v, out (B, H, ., D) and lse (B, H, T): kept once something needs a gradient.
    const bool attention_grad = grad_flows || prefix || is_lora(layer, linears[0]);
    if (attention_grad) act += 2 * N * C + 2 * B * S * C + B * H * Tq;
    grad_flows = grad_flows || attention_grad || is_lora(layer, linears[1]);
    if (grad_flows) act += N * C + 2 * N;                      // ln_2
    grad_flows = grad_flows || is_lora(layer, linears[2]);
    if (grad_flows) act += N * F;                              // gelu keeps its input
    grad_flows = grad_flows || is_lora(layer, linears[3]);
  }
  if (grad_flows) act += N * C + 2 * N;  // ln_f
  if (full) act += N * C;                // lm_head (tied wte, trainable) keeps its input
  act += N * V;                          // cross_entropy keeps the logits
  // With a frozen base the peak holds a few tensors that are alive but not
  // saved (full FT saves them anyway, so they cost it nothing extra): three
  // (N, C) around the last block and the head, measured with the ledger; and
  // the prefix MLP's output table, which the per-layer key/value views hold.
  if (!full) act += 3 * N * C;
  if (prefix && prefix->prefix_projection) act += P * L * 2 * C;

  MemoryBytes out;
  out.weights = size_t(matrices) * dtype_size(weight_dtype) + size_t(vectors) * kF32;
  out.adapter = size_t(adapter) * kF32;
  out.grads = size_t(trainable) * kF32;
  out.optimizer = 2 * size_t(trainable) * kF32;
  out.activations = size_t(act) * kF32;
  return out;
}

// Token ids (B, T) i32: a fixed pattern below the vocabulary size.
static Tensor pattern_ids(int64_t B, int64_t T, int vocab) {
  std::vector<int32_t> v(size_t(B * T));
  for (size_t i = 0; i < v.size(); ++i) v[i] = int32_t((i * 7919 + 13) % size_t(vocab));
  return Tensor::from_vector(v, {B, T}, Tag::workspace);
}

MemoryBytes measure_training_memory(const models::ModelConfig& m, const std::optional<PeftConfig>& peft, int64_t B,
                                    int64_t T, DType weight_dtype) {
  std::shared_ptr<models::CausalLM> model = models::make_model(m, 1, weight_dtype);
  std::shared_ptr<PeftModel> pm;
  if (peft) pm = get_peft_model(model, *peft);
  nn::Module& trained = pm ? static_cast<nn::Module&>(*pm) : *model;
  trained.train();
  nn::AdamW opt(trained.named_parameters());
  Tensor ids = pattern_ids(B, T, m.vocab_size);  // (B, T)
  Ledger::instance().reset_peaks();
  {
    ag::Variable loss = pm ? pm->loss(ids, ids) : model->loss(ids, ids);
    loss.backward();
  }
  opt.step();
  const Ledger& l = Ledger::instance();
  MemoryBytes out;
  out.weights = l.peak(Tag::weights);
  out.adapter = l.peak(Tag::adapter);
  out.grads = l.peak(Tag::grads);
  out.optimizer = l.peak(Tag::optimizer);
  out.activations = l.peak(Tag::activations);
  return out;
}

std::string memory_report(const MemoryBytes& predicted, const MemoryBytes& measured, const std::string& title) {
  auto mib = [](size_t bytes) { return double(bytes) / (1024.0 * 1024.0); };
  std::string s = fmt::format("{}\n  {:<12} {:>14} {:>14} {:>8}\n", title, "category", "predicted MiB", "measured MiB",
                              "ratio");
  auto row = [&](const char* name, size_t p, size_t m) {
    const double ratio = p > 0 ? double(m) / double(p) : (m == 0 ? 1.0 : 0.0);
    s += fmt::format("  {:<12} {:>14.3f} {:>14.3f} {:>8.3f}\n", name, mib(p), mib(m), ratio);
  };
  row("weights", predicted.weights, measured.weights);
  row("adapter", predicted.adapter, measured.adapter);
  row("grads", predicted.grads, measured.grads);
  row("optimizer", predicted.optimizer, measured.optimizer);
  row("activations", predicted.activations, measured.activations);
  row("total", predicted.total(), measured.total());
  return s;
}

}  // namespace mp::peft
