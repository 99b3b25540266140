// minipeft info: a model's shape and parameters, an adapter's trainable
// line, and the predicted memory of one training step per category.
#include <fmt/format.h>

#include "peft/memory_report.h"
#include "engine/error.h"
#include "tools/cli/command.h"
#include "tools/cli/model_options.h"
#include "tools/cli/train_options.h"
#include "tools/paths.h"
#include "tools/trainer.h"

namespace mp::cli {

void add_info(CLI::App& app) {
  struct Options {
    ModelChoice m;
    tools::TrainConfig train;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("info", "model/adapter summary, trainable parameters, predicted training memory");
  add_model_options(cmd, o->m);
  cmd->add_option("--method", o->train.method, "method to predict memory for: full | lora | prompt | prefix (ignored with --adapter)")
      ->capture_default_str();
  cmd->add_option("--lora-r", o->train.lora_r, "LoRA rank")->capture_default_str();
  cmd->add_option("--virtual-tokens", o->train.num_virtual_tokens, "prompt/prefix virtual tokens")->capture_default_str();
  cmd->add_option("--batch", o->train.batch, "batch for the memory prediction")->capture_default_str();
  cmd->add_option("--seq", o->train.seq, "sequence length for the memory prediction")->capture_default_str();
  cmd->callback([o] {
    o->train.model = o->m.model;
    o->train.seed = o->m.seed;
    o->train.base_dtype = o->m.base_dtype;
    o->train.validate();
    tools::TrainedModel m;
    if (o->m.adapter.empty()) {
      models::Tokenizer tok = models::Tokenizer::from_dir(default_tokenizer_dir());
      m = tools::build_model(o->train, tok);
    } else {
      m = tools::load_model(o->m.model, o->m.adapter, o->m.seed, o->m.base_dtype);
    }
    const models::ModelConfig& c = m.base->config();
    fmt::print("{}: {} layers, {} heads, width {}, MLP {}, vocab {}, {} positions\n", models::arch_name(c.arch),
               c.num_layers, c.num_heads, c.hidden_size, c.ffn_dim, c.vocab_size, c.max_positions);
    if (m.peft) {
      fmt::print("adapter: {}\n", peft::peft_type_name(m.peft->peft_config().peft_type()));
      fmt::print("{}\n", m.peft->trainable_parameters_line());
    } else {
      fmt::print("parameters: {} (all trainable: full fine-tuning)\n", m.base->num_parameters());
    }
    std::optional<peft::PeftConfig> pc;
    if (m.peft) pc = m.peft->peft_config();
    peft::MemoryBytes p;
    try {
      p = peft::predict_training_memory(c, pc, o->train.batch, o->train.seq, o->m.base_dtype);
    } catch (const Error& e) {  // LoRA on a layer the report does not model (OPT's project_in, ...)
      fmt::print("memory prediction: {}\n", e.what());
      return;
    }
    fmt::print("predicted peak bytes of one training step (B={}, T={}, AdamW):\n", o->train.batch, o->train.seq);
    for (auto [name, bytes] : {std::pair{"weights", p.weights}, {"adapter", p.adapter}, {"grads", p.grads},
                               {"optimizer", p.optimizer}, {"activations", p.activations}, {"total", p.total()}})
      fmt::print("  {:<12} {:10.1f} MiB\n", name, double(bytes) / (1 << 20));
  });
}

}  // namespace mp::cli
