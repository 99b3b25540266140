// minipeft merge: fold a LoRA adapter into its base model (W0 += scale B A)
// and write a plain HF checkpoint (config.json + model.safetensors). With
// --base-dtype nf4 the base is dequantized first: the model written is f32.
#include <fmt/format.h>

#include "parallel/communicator.h"
#include "models/load.h"
#include "models/nf4_base.h"
#include "engine/error.h"
#include "cli/command.h"
#include "cli/model_options.h"
#include "train/trainer.h"

namespace mp::cli {

void add_merge(CLI::App& app) {
  struct Options {
    ModelChoice m;
    std::string out;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("merge", "merge a LoRA adapter into the base model and save it in HF format");
  add_model_options(cmd, o->m, /*adapter_required=*/true);
  cmd->add_option("--out", o->out, "output folder for config.json + model.safetensors")->required();
  cmd->callback([o] {
    dist::require_one_process("merge");
    tools::TrainedModel m = tools::load_model(o->m.model, o->m.adapter, o->m.seed, o->m.base_dtype);
    if (m.peft->peft_config().peft_type() != peft::PeftType::lora)
      fail("only LoRA adapters can be merged; {} holds a {} adapter", o->m.adapter,
           peft::peft_type_name(m.peft->peft_config().peft_type()));
    if (o->m.base_dtype == models::BaseDType::nf4) {
      // As HF merges into a 4-bit base: the weights the adapter was trained
      // against, dequantized, plus B A; saved in f32.
      models::dequantize_base_nf4(*m.base);
      fmt::print("the nf4 base was dequantized: {} holds f32 weights (dequantized nf4 + the adapter)\n", o->out);
    }
    std::shared_ptr<models::CausalLM> merged = m.peft->merge_and_unload();
    models::save_pretrained(*merged, o->out);
    fmt::print("wrote {}\n", o->out);
  });
}

}  // namespace mp::cli
