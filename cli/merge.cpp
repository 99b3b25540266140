// minipeft merge: fold a LoRA adapter into its base model (W0 += scale B A)
// and write a plain HF checkpoint (config.json + model.safetensors). With
// --base-dtype nf4 the base is dequantized first: the model written is f32.
//
// With --combine linear|cat|svd: combine several LoRA adapters (--adapter
// name=folder, repeated, one --weights each) into one new LoRA adapter, as
// HF PEFT's add_weighted_adapter, and write it as a PEFT adapter folder.
#include <fmt/format.h>

#include "parallel/communicator.h"
#include "models/load.h"
#include "models/nf4_base.h"
#include "engine/error.h"
#include "cli/command.h"
#include "cli/model_options.h"
#include "peft/weighted_adapter.h"
#include "train/adapters.h"
#include "train/trainer.h"

namespace mp::cli {

namespace {

struct Options {
  ModelChoice m;
  std::string out;
  std::string combine;  // "" = merge into the base
  std::vector<double> weights;
  int svd_rank = 0;
};

// The adapter names of --adapter values, in their order.
std::vector<std::string> adapter_names(const std::vector<std::string>& specs) {
  std::vector<std::string> names;
  for (const std::string& s : specs) names.push_back(train::parse_adapter_spec(s).name);
  return names;
}

void combine(const Options& o) {
  const peft::CombinationType type = peft::parse_combination_type(o.combine);
  if (o.weights.size() != o.m.adapters.size())
    fail("--weights: {} weights for {} --adapter", o.weights.size(), o.m.adapters.size());
  train::TrainedModel m = train::load_model_with_adapters(o.m.model, o.m.adapters, o.m.seed, o.m.base_dtype);
  const std::string name = "__combined__";
  peft::add_weighted_adapter(*m.peft, adapter_names(o.m.adapters), o.weights, name, type, o.svd_rank);
  m.peft->save_pretrained(o.out, name);
  fmt::print("wrote {} (LoRA r {}, {} of {} adapters)\n", o.out, m.peft->peft_config(name).as_lora()->r, o.combine,
             o.m.adapters.size());
}

void merge_into_base(const Options& o) {
  if (o.m.adapters.size() != 1) fail("merge: {} --adapter given; several need --combine", o.m.adapters.size());
  if (!o.weights.empty() || o.svd_rank != 0) fail("--weights and --svd-rank need --combine");
  train::TrainedModel m = train::load_model_with_adapters(o.m.model, o.m.adapters, o.m.seed, o.m.base_dtype);
  if (m.peft->peft_config().peft_type() != peft::PeftType::lora)
    fail("only LoRA adapters can be merged; {} holds a {} adapter", o.m.adapters[0],
         peft::peft_type_name(m.peft->peft_config().peft_type()));
  if (o.m.base_dtype == models::BaseDType::nf4) {
    // As HF merges into a 4-bit base: the weights the adapter was trained
    // against, dequantized, plus B A; saved in f32.
    models::dequantize_base_nf4(*m.base);
    fmt::print("the nf4 base was dequantized: {} holds f32 weights (dequantized nf4 + the adapter)\n", o.out);
  }
  std::shared_ptr<models::CausalLM> merged = m.peft->merge_and_unload();
  models::save_pretrained(*merged, o.out);
  fmt::print("wrote {}\n", o.out);
}

}  // namespace

void add_merge(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "merge", "merge a LoRA adapter into the base model and save it in HF format, or (--combine) combine several "
               "LoRA adapters into one PEFT adapter");
  add_model_options(cmd, o->m, /*adapter_required=*/true, /*several_adapters=*/true);
  cmd->get_option("--adapter")
      ->description("HF PEFT adapter folder; with --combine, name=folder, repeated (one --weights each)");
  cmd->add_option("--out", o->out,
                  "output folder: config.json + model.safetensors, or with --combine adapter_config.json + "
                  "adapter_model.safetensors")
      ->required();
  cmd->add_option("--combine", o->combine,
                  "combine the --adapter LoRA adapters as HF PEFT's add_weighted_adapter: linear, cat or svd");
  cmd->add_option("--weights", o->weights, "one weight per --adapter, comma-separated (with --combine)")
      ->delimiter(',');
  cmd->add_option("--svd-rank", o->svd_rank, "rank of the svd combination (default: the largest input rank)");
  cmd->callback([o] {
    parallel::require_one_process("merge");
    if (o->combine.empty()) merge_into_base(*o);
    else combine(*o);
  });
}

}  // namespace mp::cli
