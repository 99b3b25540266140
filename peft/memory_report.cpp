#include "peft/memory_report.h"

#include <algorithm>
#include <regex>
#include <span>
#include <string>
#include <vector>

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

// The method being trained, as the architectures' counts need it.
struct Method {
  bool full = false;  // full fine-tuning: every base parameter is trainable
  const LoraConfig* lora = nullptr;
  const PromptTuningConfig* prompt = nullptr;
  const PrefixTuningConfig* prefix = nullptr;
  int64_t P = 0;  // virtual tokens of prompt or prefix tuning
  int64_t r = 0;  // LoRA's rank

  // Does LoRA wrap the linear layer of this module (full name)?
  bool adapted(const std::string& module) const { return lora && targets(*lora, module); }
};

// The rows every layer runs over.
struct Rows {
  int64_t B = 0;
  int64_t T = 0;  // positions per sequence (prompt tuning: P + T, its virtual tokens run through every layer)
  int64_t N = 0;  // token rows, B * T
  int64_t S = 0;  // keys per query (prefix tuning: P + T)
};

// A linear layer of one transformer layer: its name within the layer, in, out.
struct LinearShape {
  const char* name;
  int64_t in, out;
};

// What one architecture contributes, in elements.
struct Elements {
  int64_t matrices = 0;   // parameters: embedding tables and linear weights (in the base's weight dtype)
  int64_t vectors = 0;    // parameters: biases and layer norm weights (f32)
  int64_t constants = 0;  // f32 buffers among the weights that are not parameters (never trained)
  int64_t lora = 0;       // LoRA's A (r, in) and B (out, r) over every adapted layer
  int64_t saved = 0;      // what the nodes keep, from the embeddings to the last hidden state
  // The largest count alive in a layer's MLP (the last layer's, as a rule: it
  // runs with the most kept): what the nodes keep by then, plus the tensors
  // that the layer's code holds and the running linear layer allocates (not
  // the embeddings, which the caller adds).
  int64_t mlp_peak = 0;
};

// layer_norm keeps x (N, C), mean and rstd (N) when x or its weight needs a gradient.
int64_t layer_norm_saves(const Rows& n, int64_t C) { return n.N * C + 2 * n.N; }

// attention keeps the contiguous copies of q (B, H, T, D), k and v (B, H, S, D),
// out (B, H, T, D) and lse (B, H, T), once anything needs a gradient.
int64_t attention_saves(const Rows& n, int64_t C, int64_t H) {
  return 2 * n.N * C + 2 * n.B * n.S * C + n.B * H * n.T;
}

// What a linear layer (in -> out) keeps: its input x (N, in) when W is
// trainable (linear, full FT) or LoRA wraps it (lora_down; the same storage
// for both), and lora_B's input (N, r), kept because B is trainable.
int64_t linear_saves(const Method& method, bool adapted, const Rows& n, int64_t in) {
  return (method.full || adapted ? n.N * in : 0) + (adapted ? n.N * method.r : 0);
}

// What a linear layer (in -> out) allocates while it runs, at its largest:
// its output (N, out); wrapped by LoRA, the base output, lora_B's output,
// that scaled and the sum (4 (N, out)) beside lora_down's output (N, r), or,
// with LoRA dropout, the base output, the dropped copy of x (N, in) and (N, r).
int64_t linear_peak(const Method& method, bool adapted, const Rows& n, int64_t in, int64_t out) {
  if (!adapted) return n.N * out;
  const int64_t at_sum = 4 * n.N * out + n.N * method.r;
  const int64_t at_dropout = method.lora->lora_dropout > 0.f ? n.N * (out + in + method.r) : 0;
  return std::max(at_sum, at_dropout);
}

// The transformer layers' linear layers, in every layer: the weight (in x
// out) and, with `bias`, the bias (out); and LoRA's A (r, in) and B (out, r)
// where it wraps one. Returns how many linear layers LoRA wraps.
template <class Adapted>
int64_t count_linears(Elements& e, const Method& method, int64_t L, std::span<const LinearShape> linears, bool bias,
                      Adapted adapted) {
  int64_t wrapped = 0;
  for (const LinearShape& l : linears) {
    e.matrices += L * l.in * l.out;
    if (bias) e.vectors += L * l.out;
    for (int64_t layer = 0; layer < L; ++layer)
      if (adapted(layer, l)) {
        e.lora += method.r * (l.in + l.out);
        ++wrapped;
      }
  }
  return wrapped;
}

// LoRA must wrap only the linear layers the report models (those of the
// transformer layers), and at least one, as get_peft_model requires.
void check_lora_targets(const Method& method, int64_t wrapped, const std::vector<std::string>& unmodelled) {
  if (!method.lora) return;
  for (const std::string& name : unmodelled)
    if (method.adapted(name)) fail("the memory report does not model LoRA on {}", name);
  if (wrapped == 0) fail("the LoRA targets name none of the transformer layers' linear layers");
}

// GPT-2 (models/gpt2.cpp, GPT2::block_forward, GPT2MLP::forward): per block
// ln_1, c_attn (C -> 3C: q, k, v side by side), attention, c_proj, ln_2,
// c_fc, gelu, c_proj; wte (V, C), wpe (positions, C) and ln_f around them.
Elements gpt2_elements(const models::ModelConfig& m, const Method& method, const Rows& n) {
  const int64_t L = m.num_layers, C = m.hidden_size, F = m.ffn_dim, H = m.num_heads, V = m.vocab_size, N = n.N;
  const LinearShape linears[] = {{"attn.c_attn", C, 3 * C}, {"attn.c_proj", C, C}, {"mlp.c_fc", C, F}, {"mlp.c_proj", F, C}};
  auto adapted = [&](int64_t layer, const LinearShape& l) {
    return method.adapted("transformer.h." + std::to_string(layer) + "." + l.name);
  };

  Elements e;
  e.matrices = V * C + int64_t(m.max_positions) * C;  // wte, wpe
  e.vectors = 2 * C + L * 4 * C;                       // ln_f; ln_1, ln_2 weight and bias
  const int64_t wrapped = count_linears(e, method, L, linears, /*bias=*/true, adapted);  // weights (in, out)
  std::vector<std::string> unmodelled;
  if (!m.tie_word_embeddings) unmodelled.push_back("lm_head");
  check_lora_targets(method, wrapped, unmodelled);

  // Activations, following the save rules in the header.
  int64_t& act = e.saved;
  bool grad = method.full || method.prompt;  // does the residual stream here need a gradient?
  for (int64_t layer = 0; layer < L; ++layer) {
    const bool attn = adapted(layer, linears[0]), proj = adapted(layer, linears[1]);
    const bool fc = adapted(layer, linears[2]), mlp_proj = adapted(layer, linears[3]);
    const bool keeps_x = grad;
    if (grad) act += layer_norm_saves(n, C);  // ln_1 keeps the block's input x
    act += linear_saves(method, attn, n, C);   // c_attn reads ln_1's output
    grad = grad || method.prefix || attn;      // the attention's q, k, v need a gradient
    if (grad) act += attention_saves(n, C, H);
    act += linear_saves(method, proj, n, C);  // c_proj reads the heads merged (a copy)
    grad = grad || proj;
    const bool keeps_x1 = grad;
    if (grad) act += layer_norm_saves(n, C);  // ln_2 keeps x1 = x + attention
    {  // The moments of the MLP that may be the peak (Elements::mlp_peak).
      // The MLP runs with the rest of the block alive: x and x1 (when no
      // layer norm keeps them), qkv (N, 3C), the attention branch's output
      // y (N, C), and ln_2's output (N, C), the MLP's input.
      const int64_t held = (keeps_x ? 0 : N * C) + 3 * N * C + N * C + (keeps_x1 ? 0 : N * C);
      // c_fc running on ln_2's output.
      e.mlp_peak = std::max(e.mlp_peak, act + held + N * C + linear_peak(method, fc, n, C, F));
      // c_proj running on gelu's output (N, F), ln_2's output alive unless
      // c_fc keeps it; then c_proj's output and the dropout's copy of it.
      const int64_t ln_2_out = method.full || fc ? 0 : N * C;
      const int64_t kept = linear_saves(method, fc, n, C) + (grad || fc ? N * F : 0);  // c_fc's input, gelu's
      const int64_t out = std::max(linear_peak(method, mlp_proj, n, F, C), m.resid_pdrop > 0.f ? 2 * N * C : 0);
      e.mlp_peak = std::max(e.mlp_peak, act + kept + held + ln_2_out + N * F + out);
      // Then the residual add: the MLP's output and the sum (2 (N, C)),
      // gelu's output gone unless c_proj keeps it.
      e.mlp_peak =
          std::max(e.mlp_peak, act + kept + linear_saves(method, mlp_proj, n, F) + held + ln_2_out + 2 * N * C);
    }
    act += linear_saves(method, fc, n, C);  // c_fc reads ln_2's output
    grad = grad || fc;
    if (grad) act += N * F;                        // gelu keeps its input (N, F)
    act += linear_saves(method, mlp_proj, n, F);  // c_proj reads gelu's output
    grad = grad || mlp_proj;
  }
  if (grad) act += layer_norm_saves(n, C);  // ln_f
  return e;
}

// OPT (models/opt.cpp, OPT::layer_forward, OPT::hidden_states): per layer
// q_proj, k_proj, v_proj (all three reading one tensor), attention,
// out_proj, fc1, relu, fc2 and two layer norms, each before its branch
// (pre-LN) or after its residual add (post-LN); embed_tokens (V, E),
// embed_positions (positions + 2, C), project_in (E -> C) and project_out
// (C -> E) when E != C, and the final layer norm when the config has one.
Elements opt_elements(const models::ModelConfig& m, const Method& method, const Rows& n) {
  const int64_t L = m.num_layers, C = m.hidden_size, F = m.ffn_dim, H = m.num_heads, V = m.vocab_size, N = n.N;
  const int64_t E = m.word_embed_proj_dim;
  const bool pre_ln = m.do_layer_norm_before, projections = E != C, final_ln = m.has_final_layer_norm();
  const LinearShape linears[] = {{"self_attn.q_proj", C, C},   {"self_attn.k_proj", C, C}, {"self_attn.v_proj", C, C},
                                 {"self_attn.out_proj", C, C}, {"fc1", C, F},              {"fc2", F, C}};
  auto adapted = [&](int64_t layer, const LinearShape& l) {
    return method.adapted("model.decoder.layers." + std::to_string(layer) + "." + l.name);
  };

  Elements e;
  e.matrices = V * E + (int64_t(m.max_positions) + 2) * C;  // embed_tokens, embed_positions
  if (projections) e.matrices += 2 * E * C;                  // project_in (C, E), project_out (E, C)
  // Two layer norms per layer and the final one: weight and bias (C each);
  // without elementwise affine no parameters, but a constant unit weight (C).
  const int64_t layer_norms = 2 * L + (final_ln ? 1 : 0);
  if (m.layer_norm_elementwise_affine)
    e.vectors += layer_norms * 2 * C;
  else
    e.constants += layer_norms * C;
  const int64_t wrapped = count_linears(e, method, L, linears, m.enable_bias, adapted);  // weights (out, in)
  std::vector<std::string> unmodelled;
  if (projections) unmodelled = {"model.decoder.project_in", "model.decoder.project_out"};
  if (!m.tie_word_embeddings) unmodelled.push_back("lm_head");
  check_lora_targets(method, wrapped, unmodelled);

  // Activations, following the save rules in the header.
  int64_t& act = e.saved;
  bool grad = method.full || method.prompt;          // does the residual stream here need a gradient?
  if (projections && method.full) act += N * E;      // project_in keeps the token embeddings (N, E)
  for (int64_t layer = 0; layer < L; ++layer) {
    const bool q = adapted(layer, linears[0]), k = adapted(layer, linears[1]), v = adapted(layer, linears[2]);
    const bool out = adapted(layer, linears[3]), fc1 = adapted(layer, linears[4]), fc2 = adapted(layer, linears[5]);
    // The layer's input x is kept by self_attn_layer_norm (pre-LN), or by
    // q_proj, k_proj and v_proj, which read it (post-LN).
    const bool keeps_x = pre_ln ? grad : method.full || q || k || v;
    if (pre_ln && grad) act += layer_norm_saves(n, C);  // self_attn_layer_norm(x)
    // q_proj, k_proj and v_proj read one tensor (the layer norm's output, or
    // x): kept once between them, plus each lora_B's input (N, r).
    if (method.full || q || k || v) act += N * C;
    act += N * method.r * (int64_t(q) + int64_t(k) + int64_t(v));
    grad = grad || method.prefix || q || k || v;  // the attention's q, k, v need a gradient
    if (grad) act += attention_saves(n, C, H);
    act += linear_saves(method, out, n, C);  // out_proj reads the heads merged (a copy)
    grad = grad || out;
    // x1 = x + attention, kept by its layer norm: final_layer_norm before the
    // MLP (pre-LN), or self_attn_layer_norm after the add (post-LN).
    const bool keeps_sum = grad;
    if (grad) act += layer_norm_saves(n, C);
    {  // The moments of the MLP that may be the peak (Elements::mlp_peak).
      // The MLP runs with the rest of the layer alive: x (when nothing
      // keeps it), q, k, v and the attention branch's output a (4 (N, C)),
      // x1 (pre-LN, when its layer norm does not keep it), and h (N, C), the
      // MLP's input (the layer norm's output).
      const int64_t held = (keeps_x ? 0 : N * C) + 4 * N * C + (pre_ln && !keeps_sum ? N * C : 0);
      // fc1 running on h.
      e.mlp_peak = std::max(e.mlp_peak, act + held + N * C + linear_peak(method, fc1, n, C, F));
      // fc2 running on relu's output (N, F) in the same statement, so fc1's
      // output (N, F) is alive too, and h unless fc1 keeps it.
      const bool relu_grad = grad || fc1;
      const int64_t kept = linear_saves(method, fc1, n, C) + (relu_grad ? N * F : 0);  // fc1's input, relu's
      const int64_t h = method.full || fc1 ? 0 : N * C;
      e.mlp_peak = std::max(e.mlp_peak, act + kept + held + h + (relu_grad ? 0 : N * F) + N * F +
                                            linear_peak(method, fc2, n, F, C));
      // Then the residual add, relu's output gone unless fc2 keeps it:
      // fc2's output, the dropout's copy and the sum (3 (N, C)); post-LN,
      // then fc2's output, the sum, its layer norm's output (N, C), mean
      // and rstd (N each).
      const int64_t add = pre_ln ? (m.resid_pdrop > 0.f ? 3 : 2) * N * C : 3 * N * C + 2 * N;
      e.mlp_peak = std::max(e.mlp_peak, act + kept + linear_saves(method, fc2, n, F) + held + add);
    }
    act += linear_saves(method, fc1, n, C);  // fc1 reads h
    grad = grad || fc1;
    if (grad) act += N * F;                   // relu keeps its input, fc1's output (N, F)
    act += linear_saves(method, fc2, n, F);  // fc2 reads relu's output (N, F)
    grad = grad || fc2;
    if (!pre_ln && grad) act += layer_norm_saves(n, C);  // final_layer_norm(x1 + MLP)
  }
  if (final_ln && grad) act += layer_norm_saves(n, C);  // the decoder's final_layer_norm
  if (projections && method.full) act += N * C;          // project_out keeps its input (N, C)
  return e;
}

}  // namespace

MemoryBytes predict_training_memory(const models::ModelConfig& m, const std::optional<PeftConfig>& peft,
                                    int64_t B, int64_t T, DType weight_dtype) {
  Method method;
  method.full = !peft.has_value();
  if (peft) {
    method.lora = peft->as_lora();
    method.prompt = peft->as_prompt_tuning();
    method.prefix = peft->as_prefix_tuning();
    method.P = peft->num_virtual_tokens();
    method.r = method.lora ? method.lora->r : 0;
  }
  const int64_t L = m.num_layers, C = m.hidden_size, V = m.vocab_size, E = m.embed_dim(), P = method.P;
  Rows n;
  n.B = B;
  n.T = T + (method.prompt ? P : 0);
  n.N = B * n.T;
  n.S = n.T + (method.prefix ? P : 0);
  const int64_t N = n.N;

  Elements e;
  switch (m.arch) {
    case models::Arch::gpt2: e = gpt2_elements(m, method, n); break;
    case models::Arch::opt: e = opt_elements(m, method, n); break;
  }
  if (!m.tie_word_embeddings) e.matrices += V * E;  // lm_head (V, E), no bias
  const int64_t base = e.matrices + e.vectors;

  // The adapter's parameters.
  int64_t adapter = e.lora;
  if (method.prompt) adapter = P * E;  // the virtual tokens' embeddings (P, E)
  int64_t prefix_hidden = 0;           // the prefix MLP's hidden width
  if (method.prefix) {
    const int64_t width = L * 2 * C;  // every layer's key and value
    prefix_hidden = method.prefix->encoder_hidden_size > 0 ? method.prefix->encoder_hidden_size : C;
    // embedding (P, C), transform.0 (hidden, C) + bias, transform.2 (width, hidden) + bias; or the table (P, width).
    adapter = method.prefix->prefix_projection
                  ? P * C + C * prefix_hidden + prefix_hidden + prefix_hidden * width + width
                  : P * width;
  }
  const int64_t trainable = method.full ? base : adapter;

  // Activations: the peak of the forward pass, at the head or in a layer's
  // MLP (the last layer's, as a rule), whichever holds more.
  //   The head: everything kept, the last hidden state (N, E) (kept by a
  //   trainable lm_head, alive anyway), the logits (N, V) that cross_entropy
  //   keeps, the shifted targets and per-row losses (N each), their sum
  //   and the loss (1 each).
  int64_t at_head = e.saved + N * E + N * V + 2 * N + 2;
  // Full FT: embed_positions (wpe) is trainable, so its node keeps the
  // position ids (N, i32), alive at the head too.
  if (method.full) at_head += N;
  //   A layer's MLP: the token embeddings (N, C) that hidden_states holds
  //   while the layers run, and the position ids (N, i32).
  int64_t in_layers = e.mlp_peak + N * C + N;
  // Prompt tuning: PeftModel::loss holds, through the whole step, the
  // concatenated embeddings (N, E) (the layers' input too, unless project_in
  // makes another (N, C) from them) and the labels with P ignored ones in
  // front (N, i32), made from those (B, P).
  if (method.prompt) {
    at_head += N * E + N + B * P;
    in_layers += (E != C ? N * E : 0) + N + B * P;
  }
  int64_t act = std::max(at_head, in_layers);
  // The prefix MLP: tanh keeps its output (P, hidden), and the per-layer
  // key/value views hold the output table (P, L * 2C) through the step.
  if (method.prefix && method.prefix->prefix_projection) act += P * prefix_hidden + P * L * 2 * C;

  MemoryBytes out;
  out.weights = size_t(e.matrices) * dtype_size(weight_dtype) + size_t(e.vectors + e.constants) * kF32;
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
