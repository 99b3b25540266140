// minipeft train: one training run (see train/trainer.h).
#include <fmt/format.h>

#include "cli/command.h"
#include "cli/tokenizer_option.h"
#include "cli/train_options.h"
#include "models/config.h"
#include "train/data/paths.h"

namespace mp::cli {

void add_train(CLI::App& app) {
  auto c = std::make_shared<train::TrainConfig>();
  c->data = train::data_dir() + "/tinyshakespeare/input.txt";
  auto no_progress = std::make_shared<bool>(false);
  auto tokenizer = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("train", "train a model: full fine-tuning, LoRA, prompt or prefix tuning");
  add_method_options(cmd, *c);
  add_optim_options(cmd, *c);
  add_run_options(cmd, *c, *no_progress);
  add_tokenizer_option(cmd, *tokenizer);
  cmd->callback([c, no_progress, tokenizer] {
    c->progress = !*no_progress;
    c->tokenizer_dir = tokenizer_dir_for(c->model, *tokenizer);
    models::Tokenizer tok = load_tokenizer(c->tokenizer_dir);
    // A random built-in model takes the given tokenizer's vocabulary size.
    if (!tokenizer->empty() && models::is_builtin_config(c->model)) {
      c->shape.vocab = tok.vocab_size();
      c->shape.eos_token = tok.eos_id();
    }
    check_tokenizer_fits(tok, c->tokenizer_dir, train::shaped_config(c->model, c->shape).vocab_size);
    train::TrainResult r = train::train(*c, tok);
    if (r.rank != 0) return;  // the other ranks of a data-parallel run print only errors
    fmt::print("{} on {}: {} steps, final loss {:.4f}", c->method, c->model, r.steps.size(),
               r.steps.empty() ? 0.0 : r.steps.back().loss);
    if (r.final_val_loss >= 0) fmt::print(", held-out loss {:.4f}", r.final_val_loss);
    fmt::print(", {:.0f} tokens/s, peak {} MiB\n", r.tokens_per_s, r.peaks.total >> 20);
    if (r.ranks > 1) {
      std::string by_rank;
      for (size_t bytes : r.optimizer_peak_by_rank) by_rank += (by_rank.empty() ? "" : ", ") + std::to_string(bytes);
      fmt::print("{} ranks{}: {} gradient bytes all-reduced per step; optimizer state by rank: {} bytes\n", r.ranks,
                 c->zero ? " with ZeRO-1" : "", r.comm_bytes_per_step, by_rank);
    }
    if (!c->out_dir.empty())
      fmt::print("wrote {}\n", r.steps.empty() || r.steps.back().step < c->steps ? train::checkpoint_path(c->out_dir)
                                                                                  : train::final_model_dir(c->out_dir));
  });
}

}  // namespace mp::cli
