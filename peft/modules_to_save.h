// modules_to_save (PEFT's ModulesToSaveWrapper): whole modules of the base
// model trained in full beside a LoRA or IA3 adapter and saved in its file,
// e.g. GPT-2's "ln_f" or OPT's "final_layer_norm". A module is picked as PEFT
// 0.21's _set_trainable picks it: its path ends with the name (Python's
// str.endswith, no "." needed, so OPT's "final_layer_norm" also picks each
// layer's). Saved keys are PEFT's: "base_model.model.<module path>.<parameter>".
//
// PEFT keeps the original module frozen and trains a copy per adapter. Here
// the module itself is trained in place: no second copy of its weights, and
// merge_and_unload finds the trained module where it belongs. The price is the
// original values, so a PeftModel with modules_to_save holds one adapter and
// cannot run the base model alone (disable_adapters, mixed batches refuse).
//
// Refused, with the reason: a name that picks no module; a module that is also
// an adapter's target; a weight tied to another module (GPT-2's and OPT's
// tied lm_head and token embedding: PEFT 0.21 unties them, training a copy of
// one while the other keeps the original).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "models/causal_lm.h"
#include "nn/linear.h"
#include "nn/module.h"

namespace mp::peft {

// The parameters of the modules `names` picks in `model`, by full name
// ("transformer.ln_f.weight"), in the model's order, each once.
std::vector<nn::NamedParameter> modules_to_save_parameters(models::CausalLM& model, const std::vector<std::string>& names);

// mp::Error when a parameter of `saved` lies in one of `layers` (an adapter's
// targets, named in the base model); `method` names the adapter.
void check_not_adapted(const std::vector<nn::NamedParameter>& saved,
                       const std::vector<std::pair<std::string, nn::Linear*>>& layers, const char* method);

}  // namespace mp::peft
