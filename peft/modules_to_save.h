// modules_to_save (PEFT's ModulesToSaveWrapper): whole modules of the base
// model trained in full beside a LoRA or IA3 adapter and saved in its file,
// e.g. GPT-2's "ln_f" or OPT's "final_layer_norm". A module is picked as PEFT
// 0.21's _set_trainable picks it: its path ends with the name (Python's
// str.endswith, no "." needed, so OPT's "final_layer_norm" also picks each
// layer's). Saved keys are PEFT's: "base_model.model.<module path>.<parameter>".
//
// As in PEFT, the original values stay, frozen, and each adapter trains its
// own copy (SavedModules): the model's parameter holds the copy of the active
// adapter, or the original when no adapter that saves it is active or
// adapters are disabled. merge_and_unload keeps the active adapter's copy.
//
// A tied lm_head and token embedding (GPT-2's, OPT's) are untied first when
// either is picked (CausalLM::untie_lm_head), as PEFT's copy unties them: the
// picked one trains a copy, the other keeps the original values.
//
// Refused, with the reason: a name that picks no module; a module that is also
// an adapter's target; an NF4 or bf16 weight (frozen storage).
#pragma once
#include <map>
#include <set>
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

// The original value of each picked parameter, kept once, and one copy per
// adapter that saves it, tagged `adapter`. Parameters are named as in the
// base model ("transformer.ln_f.weight").
class SavedModules {
 public:
  // Adapter `adapter` trains `params` (modules_to_save_parameters): each gets
  // a copy of its original value. The parameters show what they showed.
  void add(const std::string& adapter, const std::vector<nn::NamedParameter>& params);
  // Adapter `adapter`'s copies go; a parameter no adapter saves any more keeps its original.
  void erase(const std::string& adapter);
  // Every saved parameter takes `adapter`'s copy, or its original where that
  // adapter saves none ("": the base model's values everywhere). What it
  // showed is kept as it is now, on the device the model has moved to; the
  // values shown follow it there.
  void show(const std::string& adapter);
  bool saves(const std::string& adapter) const { return copies_.count(adapter) > 0; }
  // The parameters `adapter` saves (the model's own Variables: they hold its
  // copy while it is shown), in the model's order.
  std::vector<nn::NamedParameter> parameters(const std::string& adapter) const;
  // `adapter`'s copies by parameter name, in the model's order, shown or not.
  std::vector<std::pair<std::string, Tensor>> copies(const std::string& adapter) const;
  // Elements of the originals and copies whose storage is not in `shown`
  // (the storages of the model's parameters), each once: what PEFT counts
  // in its wrappers beside the modules the model runs.
  int64_t hidden_elements(const std::set<const Storage*>& shown) const;
  // Keep what is shown as the model's own and forget the rest (merge_and_unload).
  void keep_shown();

 private:
  struct Saved {
    ag::Variable param;  // the model's parameter
    Tensor original;     // its values before any adapter
  };
  // Where `pname`'s value for `adapter` is kept: its copy, else the original.
  Tensor& slot(const std::string& adapter, const std::string& pname, Saved& s);

  std::vector<std::pair<std::string, Saved>> params_;                 // in the order first saved
  std::map<std::string, std::map<std::string, Tensor>> copies_;       // adapter -> parameter name -> copy
  std::string shown_;
};

// mp::Error when a parameter of `saved` lies in one of `layers` (an adapter's
// targets, named in the base model); `method` names the adapter.
void check_not_adapted(const std::vector<nn::NamedParameter>& saved,
                       const std::vector<std::pair<std::string, nn::Linear*>>& layers, const char* method);

}  // namespace mp::peft
