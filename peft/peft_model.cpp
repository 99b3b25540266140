#include "peft/peft_model.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <regex>
#include <set>

#include "autograd/ops.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "nn/rng.h"
#include "nn/safetensors.h"

namespace mp::peft {

namespace {

const std::string kBasePrefix = "base_model.model.";

// PEFT's target rule: the module's name is the target, or ends in "." + target;
// a regex (when given) must match the whole name.
bool is_target(const std::string& module_name, const std::vector<std::string>& targets, const std::string& regex) {
  if (!regex.empty()) return std::regex_match(module_name, std::regex(regex));
  for (const std::string& t : targets) {
    if (module_name == t) return true;
    if (module_name.size() > t.size() && module_name.ends_with(t) && module_name[module_name.size() - t.size() - 1] == '.')
      return true;
  }
  return false;
}

// "a, b, c" (fmt::join trips a false gcc 12 warning in fmt 9).
template <class Range>
std::string join(const Range& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + std::string(item);
  return out;
}

std::string last_component(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

// A (B, n) i32 tensor of ones on `device`: the attention mask of virtual tokens.
Tensor ones_mask(int64_t batch, int64_t n, Device device) { return Tensor::full({batch, n}, 1.0, DType::i32, device); }

}  // namespace

// 1234567 -> "1,234,567" (Python's format spec ",d").
std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string trainable_line(int64_t trainable, int64_t all) {
  const double pct = all > 0 ? 100.0 * double(trainable) / double(all) : 0.0;
  return fmt::format("trainable params: {} || all params: {} || trainable%: {:.4f}", with_commas(trainable),
                     with_commas(all), pct);
}

// ---------------------------------------------------------------------------
// Building adapters

PeftModel::PeftModel(std::shared_ptr<models::CausalLM> model) : model_(std::move(model)) {
  if (!model_) fail("get_peft_model: no model");
  base_model_wrapper_ = add_module("base_model", std::make_shared<ModuleDict>());
  base_model_wrapper_->insert("model", model_);
  model_->freeze("*");
}

PeftModel::PeftModel(std::shared_ptr<models::CausalLM> model, PeftConfig config, const std::string& adapter_name,
                     const models::Tokenizer* tokenizer)
    : PeftModel(std::move(model)) {
  create_adapter(adapter_name, std::move(config), tokenizer);
  active_ = adapter_name;
  activate();
}

bool PeftModel::is_prompt_family() const {
  return !configs_.empty() && configs_.begin()->second.is_prompt_method();
}

// PEFT's TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING and ..._FEEDFORWARD_MODULES_MAPPING,
// each filled in when not given (PEFT's _prepare_adapter_config; an empty list counts as not given).
static void ia3_defaults(Ia3Config& c, models::Arch arch) {
  const bool gpt2 = arch == models::Arch::gpt2;
  if (c.target_modules.empty() && c.target_modules_regex.empty())
    c.target_modules = gpt2 ? std::vector<std::string>{"c_attn", "mlp.c_proj"}
                            : std::vector<std::string>{"q_proj", "k_proj", "fc2"};
  if (c.feedforward_modules.empty() && c.feedforward_modules_regex.empty())
    c.feedforward_modules = {gpt2 ? "mlp.c_proj" : "fc2"};
}

void PeftModel::create_adapter(const std::string& name, PeftConfig c, const models::Tokenizer* tokenizer) {
  if (name.empty() || name.find('.') != std::string::npos)
    fail("adapter name '{}' must be non-empty and contain no '.'", name);
  if (configs_.count(name)) fail("adapter '{}' already exists", name);
  c.validate();
  const models::ModelConfig& mc = model_->config();
  const bool prompt_family = c.is_prompt_method();
  if (!configs_.empty() && (prompt_family != is_prompt_family() ||
                            (!prompt_family && c.peft_type() != configs_.begin()->second.peft_type())))
    fail("adapter '{}': a PeftModel holds adapters of one kind (LoRA, IA3, or prompt/prefix), not a mix", name);
  const uint64_t seed = nn::next_init_seed();

  if (c.as_lora() || c.as_ia3()) {
    // Picked before the adapter's own modules exist, so that none of them matches, and
    // checked before anything is added, so that a refused adapter leaves the model as it was.
    std::vector<nn::NamedParameter> saved = modules_to_save_parameters(*model_, c.modules_to_save());
    LoraConfig* lora = c.as_lora();
    Ia3Config* ia3 = c.as_ia3();
    if (ia3) ia3_defaults(*ia3, mc.arch);
    const char* method = lora ? "LoRA" : "IA3";
    const auto targets = lora ? find_targets(lora->target_modules, lora->target_modules_regex, method)
                              : find_targets(ia3->target_modules, ia3->target_modules_regex, method);
    check_not_adapted(saved, targets, method);
    if (lora) add_lora(name, *lora, targets);
    else add_ia3(name, *ia3, targets);
    if (!saved.empty()) saved_.add(name, saved);
  } else {
    if (!prompt_encoder_) prompt_encoder_ = add_module("prompt_encoder", std::make_shared<ModuleDict>());
    // PEFT's _prepare_prompt_learning_config: dimensions come from the model.
    auto fill = [&](int& token_dim, int& layers, int& heads, int dim) {
      c.check_matches(mc, "adapter '" + name + "'");
      token_dim = dim;
      layers = mc.num_layers;
      heads = mc.num_heads;
    };
    if (auto* p = c.as_prompt_tuning()) {
      fill(p->token_dim, p->num_layers, p->num_attention_heads, mc.embed_dim());
      PromptTuningConfig init = *p;
      std::unique_ptr<models::Tokenizer> own;
      if (c.inference_mode) init.prompt_tuning_init = PromptTuningInit::random;  // the file holds the values
      if (init.prompt_tuning_init == PromptTuningInit::text && !tokenizer) {
        if (p->tokenizer_name_or_path.empty()) fail("prompt_tuning_init TEXT needs tokenizer_name_or_path");
        own = std::make_unique<models::Tokenizer>(models::Tokenizer::from_dir(p->tokenizer_name_or_path));
        tokenizer = own.get();
      }
      prompt_encoder_->insert(name, std::make_shared<PromptEmbedding>(init, *model_, tokenizer, seed));
    } else if (auto* p = c.as_prefix_tuning()) {
      fill(p->token_dim, p->num_layers, p->num_attention_heads, mc.hidden_size);
      if (p->encoder_hidden_size <= 0) p->encoder_hidden_size = p->token_dim;  // PEFT's default
      const bool projection = p->prefix_projection && !c.inference_mode;
      prompt_encoder_->insert(name, std::make_shared<PrefixEncoder>(*p, mc, projection, seed));
    }
  }
  configs_.emplace(name, std::move(c));
}

LoraLinear& PeftModel::lora_of(nn::Linear& layer) const {
  auto lora = std::dynamic_pointer_cast<LoraLinear>(layer.adapter());
  assert(lora);
  return *lora;
}

std::vector<std::pair<nn::Linear*, TunerLayer*>> PeftModel::tuned_layers() const {
  std::vector<std::pair<nn::Linear*, TunerLayer*>> out;
  for (const auto* layers : {&lora_layers_, &ia3_layers_})
    for (const auto& [path, linear] : *layers) out.emplace_back(linear, static_cast<TunerLayer*>(linear->adapter().get()));
  return out;
}

PeftModel::NamedLinears PeftModel::find_targets(const std::vector<std::string>& target_modules,
                                                const std::string& regex, const char* method) const {
  // Every Linear the targets name, and every Linear there is (for the error).
  NamedLinears targets;
  std::set<std::string> available;
  std::set<std::string> matched_targets;
  for (auto& [path, module] : model_->named_modules()) {
    auto* linear = dynamic_cast<nn::Linear*>(module);
    if (linear) available.insert(last_component(path));
    if (path.empty() || !is_target(path, target_modules, regex)) continue;
    if (!linear) fail("target module '{}' is not a Linear layer; {} can only wrap Linear layers", path, method);
    targets.emplace_back(path, linear);
    for (const std::string& t : target_modules)
      if (is_target(path, {t}, "")) matched_targets.insert(t);
  }
  std::vector<std::string> unknown;
  for (const std::string& t : target_modules)
    if (!matched_targets.count(t)) unknown.push_back(t);
  if (targets.empty() || !unknown.empty()) {
    const std::string asked = regex.empty() ? join(unknown) : regex;
    fail("target modules [{}] not found in the {} model; its linear modules are: {}", asked,
         models::arch_name(model_->config().arch), join(available));
  }
  return targets;
}

void PeftModel::add_lora(const std::string& name, LoraConfig& c, const NamedLinears& targets) {
  // PEFT corrects fan_in_fan_out to the layer kind (with a warning): true for
  // GPT-2's Conv1D, false for torch.nn.Linear. The layout decides here.
  c.fan_in_fan_out = targets.front().second->layout() == nn::Layout::conv1d;

  const uint64_t seed = nn::next_init_seed();
  for (size_t i = 0; i < targets.size(); ++i) {
    const auto& [path, linear] = targets[i];
    if (!linear->adapter()) {
      linear->set_adapter(LoraLinear::kSeamName, std::make_shared<LoraLinear>());
      lora_layers_.emplace_back(path, linear);
    } else if (!std::dynamic_pointer_cast<LoraLinear>(linear->adapter())) {
      fail("layer '{}' already carries a non-LoRA adapter", path);
    }
    lora_of(*linear).add_adapter(name, c, *linear, nn::mix_seed(seed, i, 0));
    // A new adapter is not active (unless it is the first): the layer keeps running the active one.
    LoraLinear& l = lora_of(*linear);
    if (!active_.empty() && active_ != name) l.set_active(l.has_adapter(active_) ? active_ : "");
  }
}

// PEFT's _check_target_module_feedforward: a regex matches the whole name, a
// list entry the end of it (str.endswith, no "." needed).
static bool is_feedforward(const std::string& path, const Ia3Config& c) {
  if (!c.feedforward_modules_regex.empty()) return std::regex_match(path, std::regex(c.feedforward_modules_regex));
  return std::any_of(c.feedforward_modules.begin(), c.feedforward_modules.end(),
                     [&](const std::string& f) { return path.ends_with(f); });
}

void PeftModel::add_ia3(const std::string& name, Ia3Config& c, const NamedLinears& targets) {
  c.fan_in_fan_out = targets.front().second->layout() == nn::Layout::conv1d;  // as for LoRA

  const uint64_t seed = nn::next_init_seed();
  for (size_t i = 0; i < targets.size(); ++i) {
    const auto& [path, linear] = targets[i];
    const bool feedforward = is_feedforward(path, c);
    if (!linear->adapter()) {
      linear->set_adapter(Ia3Linear::kSeamName, std::make_shared<Ia3Linear>(feedforward));
      ia3_layers_.emplace_back(path, linear);
    }
    auto ia3 = std::dynamic_pointer_cast<Ia3Linear>(linear->adapter());
    if (!ia3) fail("layer '{}' already carries a non-IA3 adapter", path);
    if (ia3->is_feedforward() != feedforward)
      fail("feedforward_modules: layer '{}' is {} feed-forward in adapter '{}' but not in the others", path,
           feedforward ? "" : "not", name);
    ia3->add_adapter(name, c, linear->in_features(), linear->out_features(), nn::mix_seed(seed, i, 0));
    if (!active_.empty() && active_ != name) ia3->set_active(ia3->has_adapter(active_) ? active_ : "");
  }
}

void PeftModel::activate() {
  model_->freeze("*");
  if (prompt_encoder_) prompt_encoder_->freeze("*");
  saved_.show(enabled_ ? active_ : "");
  if (active_.empty() || !configs_.count(active_)) return;
  const PeftConfig& c = configs_.at(active_);
  if (c.inference_mode) return;  // a loaded adapter that is not is_trainable
  for (auto [pname, p] : saved_parameters(active_)) p.set_requires_grad(true);
  if (const LoraConfig* lora = c.as_lora()) {
    for (auto& [path, linear] : lora_layers_) {
      LoraLinear& l = lora_of(*linear);
      if (!l.has_adapter(active_)) continue;
      for (Variable p : {l.weights(active_).A, l.weights(active_).B, l.weights(active_).magnitude})
        if (p.defined()) p.set_requires_grad(true);
      if (lora->bias == LoraBias::lora_only && linear->bias.defined()) linear->bias.set_requires_grad(true);
    }
    if (lora->bias == LoraBias::all) model_->set_requires_grad("*bias*", true);  // PEFT: "bias" in the name
  } else if (c.as_ia3()) {
    for (auto& [path, linear] : ia3_layers_) {
      auto& ia3 = static_cast<Ia3Linear&>(*linear->adapter());
      if (ia3.has_adapter(active_)) Variable(ia3.vector(active_)).set_requires_grad(true);
    }
  } else {
    prompt_encoder_->set_requires_grad(active_ + ".*", true);
  }
}

void PeftModel::add_adapter(const std::string& name, PeftConfig config, const models::Tokenizer* tokenizer) {
  create_adapter(name, std::move(config), tokenizer);
  activate();
}

void PeftModel::set_adapter(const std::string& name) {
  if (!configs_.count(name)) fail("no adapter '{}' (have: {})", name, join(adapter_names()));
  for (auto& [linear, tuner] : tuned_layers()) tuner->set_active(tuner->has_adapter(name) ? name : "");
  active_ = name;
  activate();
}

void PeftModel::delete_adapter(const std::string& name) {
  if (!configs_.count(name)) fail("no adapter '{}' to delete", name);
  for (auto& [linear, tuner] : tuned_layers())
    if (tuner->has_adapter(name)) tuner->delete_adapter(name);
  if (prompt_encoder_) prompt_encoder_->erase(name);
  configs_.erase(name);
  saved_.erase(name);
  if (active_ == name) {
    active_ = configs_.empty() ? "" : configs_.begin()->first;
    if (!active_.empty()) set_adapter(active_);
  }
  activate();
}

std::vector<std::string> PeftModel::adapter_names() const {
  std::vector<std::string> names;
  for (const auto& [name, c] : configs_) names.push_back(name);
  return names;
}

const PeftConfig& PeftModel::peft_config(const std::string& name) const {
  auto it = configs_.find(name);
  if (it == configs_.end()) fail("no adapter '{}'", name);
  return it->second;
}

std::vector<nn::NamedParameter> PeftModel::saved_parameters(const std::string& name) const {
  return saved_.parameters(name);
}

void PeftModel::disable_adapters() {
  enabled_ = false;
  saved_.show("");
  for (auto& [linear, tuner] : tuned_layers()) tuner->enabled = false;
}

void PeftModel::enable_adapters() {
  enabled_ = true;
  saved_.show(active_);
  for (auto& [linear, tuner] : tuned_layers()) tuner->enabled = true;
}

// ---------------------------------------------------------------------------
// Forward

struct PeftModel::Prepared {
  models::ForwardOptions opt;
  Tensor mask;                             // (B, P+T) when extended
  std::vector<models::KeyValue> prefix;    // per layer (B, H, P, D)
  int64_t virtual_tokens = 0;              // P rows in front of the logits (prompt tuning)
};

PeftModel::Prepared PeftModel::prepare(const Tensor& ids, const models::ForwardOptions& options,
                                       const std::vector<std::string>* rows) {
  if (ids.dim() != 2) fail("input ids must be (B, T), got {}", shape_str(ids.shape()));
  const int64_t B = ids.size(0);
  const Tensor* attention_mask = options.attention_mask;
  Prepared in;
  in.opt.attention_mask = attention_mask;
  in.opt.position_ids = options.position_ids;
  in.opt.segment_ids = options.segment_ids;
  if (!enabled_ || !is_prompt_family() || active_.empty()) return in;
  if (options.position_ids || options.segment_ids)
    fail("packed rows (position_ids, segment_ids) work with LoRA or the base model, not with prompt or prefix tuning");

  // Each row's adapter; one of them for all (the usual case) runs its encoder once for the batch.
  const std::vector<std::string> names = rows ? *rows : std::vector<std::string>(size_t(B), active_);
  const bool one = std::all_of(names.begin(), names.end(), [&](const std::string& n) { return n == names[0]; });
  for (const std::string& n : names)
    if (!configs_.count(n)) fail("a mixed batch of prompt adapters needs an adapter on every row; no adapter '{}'", n);
  const PeftConfig& c = configs_.at(names[0]);
  const int64_t P = c.num_virtual_tokens();
  for (const std::string& n : names)
    if (configs_.at(n).num_virtual_tokens() != P || bool(configs_.at(n).as_prompt_tuning()) != bool(c.as_prompt_tuning()))
      fail("a mixed batch needs adapters of one kind and one number of virtual tokens: '{}' and '{}' differ", names[0], n);
  if (attention_mask) {  // the virtual tokens are always visible; the mask lives on the model's device
    const Device device = model_->token_embedding_weight().value().device();
    in.mask = ops::cat({ones_mask(B, P, device), attention_mask->to(device)}, 1);  // (B, P+T)
    in.opt.attention_mask = &in.mask;
  }
  auto encoder = [&](const std::string& n) { return prompt_encoder_->find_module(n); };
  if (c.as_prompt_tuning()) {
    std::vector<Variable> prompts;  // (B, P, E) at once, or (1, P, E) per row
    if (one) prompts.push_back(static_cast<PromptEmbedding*>(encoder(names[0]))->forward(B));
    else
      for (const std::string& n : names) prompts.push_back(static_cast<PromptEmbedding*>(encoder(n))->forward(1));
    Variable tokens = model_->embed_tokens(ids);                        // (B, T, E)
    in.opt.inputs_embeds = ag::cat({ag::cat(prompts, 0), tokens}, 1);  // (B, P+T, E)
    in.virtual_tokens = P;
  } else if (one) {
    in.prefix = static_cast<PrefixEncoder*>(encoder(names[0]))->forward(B);
    in.opt.prefix = &in.prefix;
  } else {  // each layer's keys and values (B, H, P, D): the rows' own, stacked
    std::vector<std::vector<models::KeyValue>> per_row;
    for (const std::string& n : names) per_row.push_back(static_cast<PrefixEncoder*>(encoder(n))->forward(1));
    for (size_t layer = 0; layer < per_row[0].size(); ++layer) {
      std::vector<Variable> keys, values;
      for (const auto& row : per_row) keys.push_back(row[layer].key), values.push_back(row[layer].value);
      in.prefix.push_back({ag::cat(keys, 0), ag::cat(values, 0)});
    }
    in.opt.prefix = &in.prefix;
  }
  return in;
}

static models::ForwardOptions with_mask(const Tensor* attention_mask) {
  models::ForwardOptions opt;
  opt.attention_mask = attention_mask;
  return opt;
}

Variable PeftModel::forward(const Tensor& ids, const Tensor* attention_mask) {
  return prepared_forward(ids, with_mask(attention_mask));
}

Variable PeftModel::prepared_forward(const Tensor& ids, const models::ForwardOptions& options,
                                     const std::vector<std::string>* rows) {
  Prepared in = prepare(ids, options, rows);
  return in.opt.inputs_embeds.defined() ? model_->forward(Tensor(), in.opt) : model_->forward(ids, in.opt);
}

models::Prefill PeftModel::generation_prefill() {
  ag::NoGrad no_grad;
  models::Prefill prefill;
  const Device device = model_->token_embedding_weight().value().device();
  Tensor one_token = Tensor::zeros({1, 1}, DType::i32, device);  // (1, 1): only B = 1 matters here
  Prepared in = prepare(one_token, {});
  if (in.opt.inputs_embeds.defined()) prefill.virtual_embeds = ag::narrow(in.opt.inputs_embeds, 1, 0, in.virtual_tokens);
  prefill.prefix = std::move(in.prefix);
  return prefill;
}

Variable PeftModel::loss(const Tensor& ids, const Tensor& labels, const Tensor* attention_mask) {
  return loss(ids, labels, with_mask(attention_mask));
}

Variable PeftModel::loss(const Tensor& ids, const Tensor& labels, const models::ForwardOptions& options) {
  Prepared in = prepare(ids, options);
  if (!in.opt.inputs_embeds.defined()) return model_->loss(ids, labels, in.opt);
  // The virtual positions have no targets: P labels of -100 in front.
  const int64_t B = labels.size(0);
  Tensor ignored = Tensor::full({B, in.virtual_tokens}, -100.0, DType::i32, labels.device());
  return model_->loss(Tensor(), ops::cat({ignored, labels}, 1), in.opt);  // labels (B, P+T)
}

// ---------------------------------------------------------------------------
// Counting

std::pair<int64_t, int64_t> PeftModel::trainable_and_all_parameters() const {
  // PEFT counts a tied table once, and beside the modules the model runs, its
  // ModulesToSaveWrappers' other modules (the originals, other adapters' copies).
  std::set<const Storage*> shown;
  int64_t all = 0;
  for (const auto& [pname, p] : named_parameters())
    if (shown.insert(p.value().storage().get()).second) all += p.value().numel();
  return {num_parameters(true), all + saved_.hidden_elements(shown)};
}

std::string PeftModel::trainable_parameters_line() const {
  auto [trainable, all] = trainable_and_all_parameters();
  return trainable_line(trainable, all);
}

void PeftModel::print_trainable_parameters() const { std::cout << trainable_parameters_line() << "\n"; }

// ---------------------------------------------------------------------------
// Adapter files

std::vector<std::pair<std::string, Tensor>> PeftModel::adapter_state_dict(const std::string& name) const {
  const PeftConfig& c = peft_config(name);
  std::vector<std::pair<std::string, Tensor>> out;
  if (const LoraConfig* lora = c.as_lora()) {
    for (const auto& [path, linear] : lora_layers_) {
      LoraLinear& l = lora_of(*linear);
      if (!l.has_adapter(name)) continue;
      out.emplace_back(kBasePrefix + path + ".lora_A.weight", l.weights(name).A.value());
      out.emplace_back(kBasePrefix + path + ".lora_B.weight", l.weights(name).B.value());
      if (l.weights(name).magnitude.defined())  // PEFT's key has no ".weight" (its older ParameterDict's)
        out.emplace_back(kBasePrefix + path + ".lora_magnitude_vector", l.weights(name).magnitude.value());  // (out)
      // bias="lora_only": PEFT 0.13 looks for "<layer>.bias", but the wrapped
      // layer's bias is "<layer>.base_layer.bias", so it saves no bias at all.
      // We write exactly what PEFT writes (the trained biases are not saved).
    }
    if (lora->bias == LoraBias::all) {
      // Every parameter with "bias" in its name; a wrapped layer's under PEFT's "base_layer".
      std::set<std::string> wrapped;
      for (const auto& [path, linear] : lora_layers_) wrapped.insert(path + ".bias");
      for (const auto& [pname, p] : model_->named_parameters()) {
        if (pname.find("bias") == std::string::npos) continue;
        const std::string key = wrapped.count(pname) ? pname.substr(0, pname.size() - 5) + ".base_layer.bias" : pname;
        out.emplace_back(kBasePrefix + key, p.value());
      }
    }
  } else if (c.is_prompt_method()) {
    nn::Module* encoder = prompt_encoder_->find_module(name);
    ag::NoGrad no_grad;
    Tensor table = c.as_prompt_tuning() ? static_cast<PromptEmbedding*>(encoder)->weight().value()
                                        : static_cast<PrefixEncoder*>(encoder)->table().value();
    out.emplace_back("prompt_embeddings", table);  // (P, E) or (P, L*2*C)
  }
  for (const auto& [path, linear] : ia3_layers_) {
    const auto& ia3 = static_cast<const Ia3Linear&>(*linear->adapter());
    if (ia3.has_adapter(name)) out.emplace_back(kBasePrefix + path + ".ia3_l", ia3.vector(name).value());  // (out, 1) or (1, in)
  }
  std::set<std::string> keys;  // bias="all" may have saved a module's bias already
  for (const auto& [key, value] : out) keys.insert(key);
  for (const auto& [pname, copy] : saved_.copies(name))
    if (!keys.count(kBasePrefix + pname)) out.emplace_back(kBasePrefix + pname, copy);
  return out;
}

void PeftModel::save_pretrained(const std::string& dir, const std::string& name) const {
  const std::string adapter = name.empty() ? active_ : name;
  PeftConfig c = peft_config(adapter);
  c.inference_mode = true;  // as PEFT writes it
  std::filesystem::create_directories(dir);
  nn::save_safetensors(dir + "/adapter_model.safetensors", adapter_state_dict(adapter), {{"format", "pt"}});
  save_adapter_config(c, dir + "/adapter_config.json");
}

void PeftModel::load_adapter(const std::string& dir, const std::string& name, bool is_trainable) {
  const std::string config_path = dir + "/adapter_config.json";
  const std::string weights_path = dir + "/adapter_model.safetensors";
  PeftConfig c = load_adapter_config(config_path);
  c.check_matches(model_->config(), config_path);
  c.inference_mode = true;  // build the adapter as the file holds it (no text init, no prefix MLP)
  try {
    create_adapter(name, c, nullptr);
  } catch (const Error& e) {
    fail("{}: {}", config_path, e.what());
  }
  configs_.at(name).inference_mode = !is_trainable;

  // The file must hold exactly the tensors this adapter has, with their shapes.
  nn::SafetensorsFile file = nn::SafetensorsFile::open(weights_path);
  std::vector<std::string> problems;
  std::set<std::string> expected;
  for (const auto& [key, dst] : adapter_state_dict(name)) {
    expected.insert(key);
    if (!file.contains(key)) {
      problems.push_back(fmt::format("missing '{}' {}", key, shape_str(dst.shape())));
    } else if (file.info(key).shape != dst.shape()) {
      problems.push_back(fmt::format("'{}' has shape {}, the model needs {}", key, shape_str(file.info(key).shape),
                                     shape_str(dst.shape())));
    }
  }
  for (const std::string& key : file.names())
    if (!expected.count(key)) problems.push_back(fmt::format("unexpected '{}'", key));
  if (!problems.empty()) {
    delete_adapter(name);
    fail("{}: does not fit adapter '{}': {}", weights_path, name, join(problems));
  }
  for (const auto& [key, dst] : adapter_state_dict(name)) file.load_into(key, dst);
  if (active_.empty()) set_adapter(name);
  activate();
}

std::shared_ptr<PeftModel> get_peft_model(std::shared_ptr<models::CausalLM> model, PeftConfig config,
                                          const std::string& adapter_name, const models::Tokenizer* tokenizer) {
  return std::make_shared<PeftModel>(std::move(model), std::move(config), adapter_name, tokenizer);
}

std::shared_ptr<PeftModel> load_peft_model(std::shared_ptr<models::CausalLM> model, const std::string& dir,
                                           const std::string& adapter_name, bool is_trainable) {
  std::shared_ptr<PeftModel> pm(new PeftModel(std::move(model)));
  pm->load_adapter(dir, adapter_name, is_trainable);
  return pm;
}

// ---------------------------------------------------------------------------
// Merging

void PeftModel::merge_adapter() {
  if (is_prompt_family() || configs_.empty()) fail("only LoRA and IA3 adapters can be merged");
  for (auto& [linear, tuner] : tuned_layers()) tuner->merge(*linear);
}

void PeftModel::unmerge_adapter() {
  for (auto& [linear, tuner] : tuned_layers()) tuner->unmerge(*linear);
}

bool PeftModel::merged() const {
  const auto layers = tuned_layers();
  return std::any_of(layers.begin(), layers.end(), [](const auto& l) { return l.second->merged(); });
}

std::shared_ptr<models::CausalLM> PeftModel::merge_and_unload() {
  if (!merged()) merge_adapter();
  saved_.show(active_);  // the model keeps the active adapter's modules_to_save
  saved_.keep_shown();
  for (auto& [linear, tuner] : tuned_layers()) linear->clear_adapter();
  lora_layers_.clear();
  ia3_layers_.clear();
  configs_.clear();
  active_.clear();
  return model_;
}

}  // namespace mp::peft
