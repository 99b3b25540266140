// minipeft compare: pretrain a small GPT-2 on tinyshakespeare (or take
// --base), adapt it to the licence corpus with each method under one token
// budget, print the table, write results.json and plots (cli/compare/compare.h).
#include <fmt/format.h>

#include "parallel/communicator.h"
#include "cli/command.h"
#include "cli/train_options.h"
#include "cli/compare/compare.h"
#include "train/data/paths.h"

namespace mp::cli {

void add_compare(CLI::App& app) {
  auto o = std::make_shared<cli::CompareOptions>();
  auto quick = std::make_shared<bool>(false);
  auto no_progress = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "compare", "pretrain a small GPT-2, adapt it with full fine-tuning, LoRA, prefix and prompt tuning, compare");
  cmd->add_option("--out", o->out_dir, "output folder: results.json, plots/, pretrain/, <method>/")
      ->capture_default_str();
  cmd->add_option("--base", o->base, "start from this HF model folder instead of pretraining");
  cmd->add_option("--model", o->train.model, "built-in shape to pretrain (gpt2-tiny, opt-tiny, ...)")->capture_default_str();
  add_shape_options(cmd, o->train.shape);
  cmd->add_option("--pretrain-data", o->pretrain_data, "pretraining text (default data/tinyshakespeare/input.txt)");
  cmd->add_option("--data", o->train.data, "adaptation text (default data/legal/licenses.txt)");
  cmd->add_option("--pretrain-steps", o->pretrain_steps, "pretraining steps")->capture_default_str();
  cmd->add_option("--pretrain-lr", o->pretrain_lr, "pretraining peak LR (warmup 10%, cosine)")->capture_default_str();
  // The adaptation runs' optimisation (pretraining shares batch, seq, seed, precision, ...): train's options.
  add_optim_options(cmd, o->train);
  add_device_option(cmd, o->train);
  cmd->add_option("--methods", o->methods, "subset of full,lora,prefix,prompt,qlora (LoRA on an NF4 base)")->delimiter(',')->capture_default_str();
  cmd->add_option("--lora-r", o->train.lora_r, "LoRA rank")->capture_default_str();
  cmd->add_option("--lora-targets", o->train.lora_targets, "LoRA target modules (default c_attn)")->delimiter(',');
  cmd->add_option("--virtual-tokens", o->train.num_virtual_tokens, "prompt/prefix tuning virtual tokens")->capture_default_str();
  cmd->add_option("--eval-batches", o->train.eval_batches, "held-out batches per evaluation")->capture_default_str();
  cmd->add_option("--evals", o->evals, "held-out evaluations along each adaptation run")->capture_default_str();
  cmd->add_option("--scale-model", o->scale_model,
                  "the real shape of the memory section (planned beside measured per method; 'none' skips it)")
      ->capture_default_str();
  cmd->add_flag("--serving", o->serving, "also: a second LoRA adapter, adapter switching and merged/unmerged latency");
  cmd->add_flag("--quick", *quick, "a small preset (pretrain 60, adapt 30 steps, batch 4): under 2 minutes");
  cmd->add_flag("--no-progress", *no_progress, "no progress lines");
  cmd->callback([o, quick, no_progress, cmd] {
    parallel::require_one_process("compare");
    cli::CompareOptions opts = *o;
    if (*quick) {  // the preset, except for what was given explicitly
      cli::CompareOptions q = opts;
      q.apply_quick();
      auto given = [&](const char* name) { return cmd->get_option(name)->count() > 0; };
      if (!given("--pretrain-steps")) opts.pretrain_steps = q.pretrain_steps;
      if (!given("--steps")) opts.train.steps = q.train.steps;
      if (!given("--batch")) opts.train.batch = q.train.batch;
      if (!given("--seq")) opts.train.seq = q.train.seq;
      if (!given("--eval-batches")) opts.train.eval_batches = q.train.eval_batches;
      if (!given("--evals")) opts.evals = q.evals;
      if (!given("--scale-model")) opts.scale_model = q.scale_model;
    }
    opts.train.progress = !*no_progress;
    models::Tokenizer tok = models::Tokenizer::from_dir(train::default_tokenizer_dir());
    cli::CompareResult r = cli::run_compare(opts, tok);
    fmt::print("\n{}", cli::format_table(r));
    cli::write_results_json(r, opts.out_dir + "/results.json");
    fmt::print("wrote {}/results.json\n", opts.out_dir);
    fmt::print("{}\n", cli::write_plots(r, opts.out_dir));
  });
}

}  // namespace mp::cli
