#include "cli/train_options.h"

#include "cli/model_options.h"
#include "parallel/communicator.h"

namespace mp::cli {

void add_method_options(CLI::App* cmd, train::TrainConfig& c) {
  cmd->add_option("--model", c.model, "built-in name (gpt2[-medium|-large|-xl|-tiny], opt-125m|350m|1.3b|2.7b|6.7b|tiny) or HF model folder")
      ->capture_default_str();
  add_shape_options(cmd, c.shape);
  add_base_dtype_option(cmd, c.base_dtype);
  cmd->add_option("--method", c.method, "full | lora | prompt | prefix | ia3")->capture_default_str();
  cmd->add_option("--lora-r", c.lora_r, "LoRA rank")->capture_default_str();
  cmd->add_option("--lora-alpha", c.lora_alpha, "LoRA alpha (scale alpha/r)")->capture_default_str();
  cmd->add_option("--lora-dropout", c.lora_dropout, "dropout on the LoRA path")->capture_default_str();
  cmd->add_option("--lora-targets", c.lora_targets, "module names or suffixes (default: c_attn for GPT-2, q_proj,v_proj for OPT)")
      ->delimiter(',');
  cmd->add_flag("--rslora", c.use_rslora, "scale alpha/sqrt(r) (rsLoRA)");
  cmd->add_flag("--use-dora", c.use_dora, "LoRA as DoRA: a trained magnitude per output channel (PEFT's use_dora)");
  cmd->add_option("--modules-to-save", c.modules_to_save,
                  "LoRA, IA3: modules trained in full beside the adapter and saved with it, by name suffix "
                  "(PEFT's modules_to_save: ln_f; OPT's decoder.final_layer_norm)")
      ->delimiter(',');
  cmd->add_option("--ia3-targets", c.ia3_targets,
                  "IA3 target modules (default PEFT's: c_attn,mlp.c_proj for GPT-2, q_proj,k_proj,fc2 for OPT)")
      ->delimiter(',');
  cmd->add_option("--ia3-feedforward", c.ia3_feedforward,
                  "IA3 targets whose input is scaled (default PEFT's: mlp.c_proj; fc2)")
      ->delimiter(',');
  cmd->add_option("--virtual-tokens", c.num_virtual_tokens, "prompt/prefix tuning: number of virtual tokens")
      ->capture_default_str();
  cmd->add_option("--prompt-init-text", c.prompt_init_text, "prompt tuning: initialise from this text's embeddings");
  cmd->add_flag("--prefix-projection", c.prefix_projection, "prefix tuning: two-layer MLP reparameterisation");
  cmd->add_option("--encoder-hidden-size", c.encoder_hidden_size, "prefix tuning: the MLP's width (default: the model's)");
}

void add_shape_options(CLI::App* cmd, train::ModelShape& s) {
  cmd->add_option("--layers", s.layers, "a built-in --model's layer count, changed (random init)");
  cmd->add_option("--width", s.width, "a built-in --model's width, changed (MLP 4x; random init)");
  cmd->add_option("--heads", s.heads, "a built-in --model's head count, changed (random init)");
}

void add_run_options(CLI::App* cmd, train::TrainConfig& c, bool& no_progress) {
  cmd->add_option("--data", c.data, "UTF-8 text file (tokenized once, cached next to it), or pairs file (.jsonl)")
      ->capture_default_str();
  cmd->add_flag("--packing", c.packing, "pairs: pack examples into full rows (attention and positions per example)");
  cmd->add_option("--val-fraction", c.val_fraction, "held-out tail of the data")->capture_default_str();
  cmd->add_option("--eval-every", c.eval_every, "evaluate every N steps (0: at the end only)")->capture_default_str();
  cmd->add_option("--eval-batches", c.eval_batches, "held-out batches per evaluation")->capture_default_str();
  cmd->add_option("--checkpoint-every", c.checkpoint_every, "checkpoint every N steps (and at the end)")
      ->capture_default_str();
  cmd->add_option("--out", c.out_dir, "output folder: log.jsonl, checkpoint.safetensors, final/");
  cmd->add_flag("--resume", c.resume, "continue from --out's checkpoint, bit for bit");
  cmd->add_option("--stop-after", c.stop_after, "stop after this step, checkpointed, as if interrupted (resume later)");
  cmd->add_flag("--no-progress", no_progress, "no progress line on the terminal");
  add_device_option(cmd, c);
}

void add_device_option(CLI::App* cmd, train::TrainConfig& c) {
  cmd->add_option_function<std::string>(
         "--device", [&c](const std::string& name) { c.device = parallel::rank_device(name); },
         "cpu | cuda | cuda:N | sim (the CPU's kernels on a device whose bytes host code may not read); under "
         "mpirun, cuda gives each rank its own GPU")
      ->default_str("cpu");
}

void add_optim_options(CLI::App* cmd, train::TrainConfig& c) {
  cmd->add_option("--batch", c.batch, "sequences per micro-batch")->capture_default_str();
  cmd->add_option("--seq", c.seq, "tokens per sequence")->capture_default_str();
  cmd->add_option("--grad-accum", c.grad_accum, "micro-batches per optimizer step")->capture_default_str();
  cmd->add_option("--steps", c.steps, "optimizer steps")->capture_default_str();
  cmd->add_option("--lr", c.lr, "peak learning rate (default by method: full 3e-4, lora 1e-3, prompt/prefix 3e-2)");
  cmd->add_option("--weight-decay", c.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  cmd->add_option("--schedule", c.schedule, "constant | linear | cosine (after linear warmup)")->capture_default_str();
  cmd->add_option("--warmup", c.warmup, "warmup steps")->capture_default_str();
  cmd->add_option("--min-lr-ratio", c.min_lr_ratio, "cosine: final LR as a fraction of the peak")->capture_default_str();
  cmd->add_option("--clip", c.clip, "clip the global gradient norm (0: off)")->capture_default_str();
  cmd->add_option("--seed", c.seed, "seed for init, batches and dropout")->capture_default_str();
  add_dtype_option(cmd, "--precision", c.precision,
                   "bf16: mixed precision, linear layers' GEMMs on bf16 copies (f32 master weights and optimizer)");
  cmd->add_option("--zero", c.zero, "1: ZeRO-1, AdamW's state sharded across the ranks of mpirun")->capture_default_str();
  cmd->add_flag("--recompute", c.recompute,
                "activation recompute: keep only each block's input, run the block again in backward");
}

}  // namespace mp::cli
