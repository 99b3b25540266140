// minipeft train: one training run (see tools/trainer.h).
#include <fmt/format.h>

#include "tools/cli/command.h"
#include "tools/cli/train_options.h"
#include "tools/paths.h"

namespace mp::cli {

void add_train(CLI::App& app) {
  auto c = std::make_shared<tools::TrainConfig>();
  c->data = data_dir() + "/tinyshakespeare/input.txt";
  auto no_progress = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("train", "train a model: full fine-tuning, LoRA, prompt or prefix tuning");
  add_method_options(cmd, *c);
  add_optim_options(cmd, *c);
  cmd->add_option("--data", c->data, "UTF-8 text file (tokenized once, cached next to it)")->capture_default_str();
  cmd->add_option("--val-fraction", c->val_fraction, "held-out tail of the data")->capture_default_str();
  cmd->add_option("--eval-every", c->eval_every, "evaluate every N steps (0: at the end only)")->capture_default_str();
  cmd->add_option("--eval-batches", c->eval_batches, "held-out batches per evaluation")->capture_default_str();
  cmd->add_option("--checkpoint-every", c->checkpoint_every, "checkpoint every N steps (and at the end)")
      ->capture_default_str();
  cmd->add_option("--out", c->out_dir, "output folder: log.jsonl, checkpoint.safetensors, final/");
  cmd->add_flag("--resume", c->resume, "continue from --out's checkpoint, bit for bit");
  cmd->add_option("--stop-after", c->stop_after, "stop after this step, checkpointed, as if interrupted (resume later)");
  cmd->add_flag("--no-progress", *no_progress, "no progress line on the terminal");
  cmd->callback([c, no_progress] {
    c->progress = !*no_progress;
    models::Tokenizer tok = models::Tokenizer::from_dir(default_tokenizer_dir());
    tools::TrainResult r = tools::train(*c, tok);
    fmt::print("{} on {}: {} steps, final loss {:.4f}", c->method, c->model, r.steps.size(),
               r.steps.empty() ? 0.0 : r.steps.back().loss);
    if (r.final_val_loss >= 0) fmt::print(", held-out loss {:.4f}", r.final_val_loss);
    fmt::print(", {:.0f} tokens/s, peak {} MiB\n", r.tokens_per_s, r.peaks.total >> 20);
    if (!c->out_dir.empty())
      fmt::print("wrote {}\n", r.steps.empty() || r.steps.back().step < c->steps ? tools::checkpoint_path(c->out_dir)
                                                                                  : tools::final_model_dir(c->out_dir));
  });
}

}  // namespace mp::cli
