// PeftModel: a frozen causal LM plus one or more named adapters, with HF
// PEFT's vocabulary (PeftModelForCausalLM):
//
//   auto pm = peft::get_peft_model(models::load_pretrained("gpt2"),
//                                  peft::PeftConfig::lora({.r = 8, .lora_alpha = 16, .target_modules = {"c_attn"}}));
//   pm->print_trainable_parameters();   // trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364
//   Variable loss = pm->loss(ids, labels);
//   loss.backward();                     // grads for the adapter only
//   pm->save_pretrained("out/");         // adapter_config.json + adapter_model.safetensors
//
// Freezing is all it takes to save memory: a parameter with requires_grad
// false gets no gradient buffer and no optimizer state, and the ops do not
// keep the activations only its gradient would need (autograd/variable.h).
//
// Parameter names are PEFT's: "base_model.model.<HF name>" for the model
// (LoRA weights under their Linear, with the seam's name: "...c_attn.lora.
// lora_A.default.weight") and "prompt_encoder.<adapter>.embedding.weight" for
// prompt and prefix tuning. Saved adapter keys are PEFT's too:
//   LoRA           base_model.model.transformer.h.0.attn.c_attn.lora_A.weight, ...lora_B.weight,
//                  plus "...<layer>.bias" (bias="lora_only") or every bias (bias="all")
//                  DoRA: also ...c_attn.lora_magnitude_vector (out)
//                  modules_to_save: base_model.model.transformer.ln_f.weight, ...bias (peft/modules_to_save.h)
//   IA3            base_model.model.transformer.h.0.attn.c_attn.ia3_l (out, 1), or (1, in) feed-forward
//   prompt/prefix  prompt_embeddings (P, E) / (P, L*2*C)
//
// All adapters of one PeftModel are of one family: LoRA, IA3, or prompt methods.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/causal_lm.h"
#include "models/generate.h"
#include "models/tokenizer.h"
#include "nn/linear.h"
#include "peft/config.h"
#include "peft/ia3.h"
#include "peft/lora.h"
#include "peft/modules.h"
#include "peft/modules_to_save.h"
#include "peft/prefix_tuning.h"
#include "peft/prompt_tuning.h"
#include "peft/tuner_layer.h"

namespace mp::peft {

class PeftModel : public nn::Module {
 public:
  // Freeze `model` and add adapter `adapter_name` (see get_peft_model).
  PeftModel(std::shared_ptr<models::CausalLM> model, PeftConfig config, const std::string& adapter_name = "default",
            const models::Tokenizer* tokenizer = nullptr);

  models::CausalLM& base_model() const { return *model_; }
  std::shared_ptr<models::CausalLM> base_model_ptr() const { return model_; }

  // ---- adapters
  // Add another adapter (trainable only once it is made active with set_adapter).
  void add_adapter(const std::string& name, PeftConfig config, const models::Tokenizer* tokenizer = nullptr);
  // Make `name` the adapter forward() uses; only its parameters are trainable.
  void set_adapter(const std::string& name);
  void delete_adapter(const std::string& name);
  const std::string& active_adapter() const { return active_; }
  std::vector<std::string> adapter_names() const;
  const PeftConfig& peft_config(const std::string& name) const;
  const PeftConfig& peft_config() const { return peft_config(active_); }
  // Run the base model alone (modules_to_save: their original values) / with the active adapter again.
  void disable_adapters();
  void enable_adapters();
  bool adapters_enabled() const { return enabled_; }
  // Linear layers with their names in the base model ("transformer.h.0.attn.c_attn").
  using NamedLinears = std::vector<std::pair<std::string, nn::Linear*>>;
  // The Linear layers that carry LoRA adapters.
  const NamedLinears& lora_layers() const { return lora_layers_; }
  // The Linear layers that carry IA3 adapters (an Ia3Linear each).
  const NamedLinears& ia3_layers() const { return ia3_layers_; }
  // The base model's parameters whose copies adapter `name`'s modules_to_save
  // trains ("transformer.ln_f.weight", ...): they hold its copies while it is
  // the active adapter and adapters are enabled. Empty without modules_to_save.
  std::vector<nn::NamedParameter> saved_parameters(const std::string& name) const;

  // ---- forward, as PeftModelForCausalLM
  // ids (B, T) i32, attention_mask (B, T) i32 or null -> logits. Prompt
  // tuning returns (B, P+T, V): the virtual positions come first, as in PEFT.
  // Prefix tuning and LoRA return (B, T, V).
  Variable forward(const Tensor& ids, const Tensor* attention_mask = nullptr);
  // What generation puts before the prompt for the active prompt-tuning or
  // prefix adapter (batch 1); empty for LoRA or with adapters disabled.
  models::Prefill generation_prefill();
  // HF's shifted causal-LM loss; labels (B, T) i32 with -100 ignored. Prompt
  // tuning prepends P labels of -100, as PEFT does.
  Variable loss(const Tensor& ids, const Tensor& labels, const Tensor* attention_mask = nullptr);
  // The same with the base model's options: attention_mask, and for packed
  // rows position_ids and segment_ids (LoRA only: a soft prompt or prefix
  // per row, not per example, would cross the examples' boundaries).
  Variable loss(const Tensor& ids, const Tensor& labels, const models::ForwardOptions& options);

  // ---- mixed batches, as HF PEFT's forward(..., adapter_names=[...]) (peft/mixed_batch.cpp)
  // Row b runs with adapter adapter_names[b]: LoRA adapters, or kBaseName
  // for the base model alone; or prompt-tuning (prefix) adapters of one
  // number of virtual tokens, each row with its own soft prompt (prefix),
  // every row naming one. A row's logits are those it has run alone with its
  // adapter. Logits as forward(): (B, P+T, V) for prompt tuning.
  static constexpr const char* kBaseName = "__base__";
  Variable forward(const Tensor& ids, const Tensor* attention_mask, const std::vector<std::string>& adapter_names);
  // Greedy continuations of several prompts in one batch, row b with adapter
  // adapter_names[b] (as above): each the tokens generate() gives that prompt
  // alone with its adapter (up to max_new_tokens, stopping after eos_token_id
  // when it is >= 0). LoRA rows: left-padded, with a KV cache; prompt and
  // prefix rows: no cache yet, every step runs the whole right-padded batch.
  std::vector<std::vector<int32_t>> generate(const std::vector<std::vector<int32_t>>& prompts,
                                             const std::vector<std::string>& adapter_names, int max_new_tokens,
                                             int eos_token_id = -1);

  // ---- counting, as PEFT's get_nb_trainable_parameters (shared tensors once)
  std::pair<int64_t, int64_t> trainable_and_all_parameters() const;
  // "trainable params: 1,234 || all params: 5,678 || trainable%: 21.7322"
  std::string trainable_parameters_line() const;
  void print_trainable_parameters() const;  // the line, to stdout

  // ---- adapter files in HF PEFT's format
  // The tensors PEFT's get_peft_model_state_dict gives, under PEFT's keys (f32).
  std::vector<std::pair<std::string, Tensor>> adapter_state_dict(const std::string& name) const;
  // dir/adapter_config.json + dir/adapter_model.safetensors (inference_mode
  // true, as PEFT writes it); the directory is created if needed.
  void save_pretrained(const std::string& dir, const std::string& name = "") const;
  // Load an adapter saved by PEFT (or by us) into a new adapter slot `name`.
  // mp::Error for a config that does not fit the model (unknown target
  // modules, other dimensions), missing, unexpected or mis-shaped tensors.
  void load_adapter(const std::string& dir, const std::string& name, bool is_trainable = false);

  // ---- merging LoRA and IA3
  void merge_adapter();    // LoRA: W0 += scale B A in every layer (the active adapter); IA3: W0 (and b) *= l
  void unmerge_adapter();  // W0 -= scale B A; W0 /= l
  bool merged() const;
  // Merge, remove every LoRA module and return the plain model (its parameters
  // still frozen; unfreeze to train it). This PeftModel is empty afterwards.
  std::shared_ptr<models::CausalLM> merge_and_unload();

 private:
  friend std::shared_ptr<PeftModel> load_peft_model(std::shared_ptr<models::CausalLM>, const std::string&,
                                                    const std::string&, bool);
  explicit PeftModel(std::shared_ptr<models::CausalLM> model);  // frozen, no adapter yet
  // Inputs the base model gets: options and the tensors they point to.
  struct Prepared;
  // `rows`: each row's adapter (a mixed batch of prompt adapters); null: the active one for all.
  Prepared prepare(const Tensor& ids, const models::ForwardOptions& options,
                   const std::vector<std::string>* rows = nullptr);
  // The base model's logits for prepare(ids, options, rows).
  Variable prepared_forward(const Tensor& ids, const models::ForwardOptions& options,
                            const std::vector<std::string>* rows = nullptr);
  // Greedy generation of the LoRA rows set by set_lora_rows, with a KV cache.
  std::vector<std::vector<int32_t>> cached_generate(const std::vector<std::vector<int32_t>>& prompts,
                                                    int max_new_tokens, int eos_token_id);
  // LoRA layers run row b with adapter_names[b] (kBaseName = none; mp::Error
  // for an unknown name); empty: the active adapter again.
  void set_lora_rows(const std::vector<std::string>& adapter_names);
  // Build adapter `name`. In inference_mode (a loaded adapter) a prompt is
  // not initialised from text and a prefix has no MLP: the file holds the table.
  void create_adapter(const std::string& name, PeftConfig config, const models::Tokenizer* tokenizer);
  // The Linears target_modules (or the regex) names; mp::Error naming the
  // targets not found. `method` names the method in errors.
  NamedLinears find_targets(const std::vector<std::string>& target_modules, const std::string& regex,
                            const char* method) const;
  // Adapter `name` on `targets` (find_targets of its config's target_modules).
  void add_lora(const std::string& name, LoraConfig& config, const NamedLinears& targets);
  void add_ia3(const std::string& name, Ia3Config& config, const NamedLinears& targets);
  // Every LoRA and IA3 layer with its adapter seam.
  std::vector<std::pair<nn::Linear*, TunerLayer*>> tuned_layers() const;
  // Make the active adapter the one that runs and trains: its modules_to_save
  // copies shown in the model (the originals when disabled), and only its
  // parameters (and biases it trains) requiring grad.
  void activate();
  LoraLinear& lora_of(nn::Linear& layer) const;
  bool is_prompt_family() const;

  std::shared_ptr<models::CausalLM> model_;
  std::shared_ptr<ModuleDict> base_model_wrapper_;  // "base_model" holding "model", as PEFT's LoraModel
  std::shared_ptr<ModuleDict> prompt_encoder_;      // "prompt_encoder": PromptEmbedding / PrefixEncoder per name
  std::map<std::string, PeftConfig> configs_;
  std::string active_;
  bool enabled_ = true;
  NamedLinears lora_layers_;
  NamedLinears ia3_layers_;
  SavedModules saved_;  // every adapter's modules_to_save: the originals and each adapter's copies
};

// Freeze every parameter of `model` and add the adapter `config` describes,
// as HF PEFT's get_peft_model. Dimensions a prompt method needs (token_dim,
// num_layers, num_attention_heads) are filled in from the model. TEXT prompt
// init uses `tokenizer`, else loads the one at tokenizer_name_or_path.
std::shared_ptr<PeftModel> get_peft_model(std::shared_ptr<models::CausalLM> model, PeftConfig config,
                                          const std::string& adapter_name = "default",
                                          const models::Tokenizer* tokenizer = nullptr);

// PeftModel.from_pretrained: wrap `model` and load the adapter in `dir`.
std::shared_ptr<PeftModel> load_peft_model(std::shared_ptr<models::CausalLM> model, const std::string& dir,
                                           const std::string& adapter_name = "default", bool is_trainable = false);

// 1234567 -> "1,234,567" (Python's format spec ",d", as PEFT prints counts).
std::string with_commas(int64_t n);

// PEFT's trainable line for given counts (exact format string of PEFT 0.13).
std::string trainable_line(int64_t trainable, int64_t all);

}  // namespace mp::peft
