// The reference trainer behind `minipeft train` and `minipeft compare`:
// full fine-tuning or a PEFT method on a text file, AdamW with warmup +
// cosine (or linear/constant) LR, gradient accumulation and clipping, eval
// on a held-out tail, atomic checkpoints and a resume that continues bit
// for bit, a progress line on a TTY and JSON-lines logs.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autograd/autocast.h"
#include "models/base_dtype.h"
#include "models/causal_lm.h"
#include "peft/peft_model.h"
#include "train/callbacks.h"
#include "train/data/batch.h"
#include "train/data/dataset.h"
#include "train/data/training_data.h"
#include "train/model_shape.h"

namespace mp::train {

struct TrainConfig {
  // What to train.
  std::string model = "gpt2-tiny";  // a built-in name (random init from seed) or an HF model folder
  ModelShape shape;                  // a built-in model's sizes changed (--layers/--width/--heads)
  std::string method = "full";      // full | lora | prompt | prefix | ia3
  int lora_r = 8;
  float lora_alpha = 16.f;
  float lora_dropout = 0.f;
  std::vector<std::string> lora_targets;  // empty: c_attn (GPT-2), q_proj + v_proj (OPT)
  bool use_rslora = false;
  bool use_dora = false;                  // LoRA as DoRA (peft/dora.h)
  std::vector<std::string> modules_to_save;  // LoRA and IA3: modules trained in full beside it (peft/modules_to_save.h)
  std::vector<std::string> ia3_targets;      // empty: PEFT's (GPT-2 c_attn, mlp.c_proj; OPT q_proj, k_proj, fc2)
  std::vector<std::string> ia3_feedforward;  // empty with empty targets: PEFT's (mlp.c_proj; fc2)
  int num_virtual_tokens = 20;       // prompt and prefix tuning
  std::string prompt_init_text;      // prompt tuning: TEXT init when not empty
  bool prefix_projection = false;    // prefix tuning: the MLP reparameterisation
  int encoder_hidden_size = 0;       // its width (0: the model's)
  models::BaseDType base_dtype = models::BaseDType::f32;  // bf16 and nf4 (QLoRA) are frozen: PEFT methods only

  // Data.
  std::string data;                  // a UTF-8 text file, or pairs when it ends in .jsonl (train/data/pairs.h)
  double val_fraction = 0.1;
  bool packing = false;              // pairs: examples packed into full rows (train/data/pairs.h, pack_batch)

  // Optimisation.
  int64_t batch = 4, seq = 64, grad_accum = 1, steps = 100;
  double lr = 0;                     // 0: the method's default (full 3e-4, others 1e-3 ... see default_lr)
  double weight_decay = 0.0;
  std::string schedule = "cosine";   // constant | linear | cosine
  int64_t warmup = 0;
  double min_lr_ratio = 0.1;
  double clip = 1.0;                 // 0: no clipping
  uint64_t seed = 0;
  DType precision = DType::f32;      // bf16: mixed precision (autograd/autocast.h)
  Device device = kCPU;              // where the model, its batches and the optimizer state live (cpu, cuda:N, sim)
  bool recompute = false;            // activation recompute (CausalLM::gradient_checkpointing_enable)
  int zero = 0;                      // 1: ZeRO-1, AdamW's state sharded across the ranks (parallel/zero_adamw.h)

  // Evaluation, checkpoints, logs. 0 turns a periodic action off.
  int64_t eval_every = 0, eval_batches = 8, checkpoint_every = 0;
  std::string out_dir;               // "" writes nothing
  std::string tokenizer_dir;         // full fine-tuning: its files are saved beside the model ("" none, GPT-2's is assumed)
  bool resume = false;               // continue from out_dir/checkpoint.safetensors
  int64_t stop_after = 0;            // stop after this step as if interrupted (0: run to --steps)
  bool progress = true;              // the progress line (on a TTY only)

  // Checks the values no run could use; mp::Error naming the option.
  void validate() const;
  // The PEFT method `method` names, nullopt for full fine-tuning; mp::Error
  // for a name that is none of full, lora, prompt, prefix, ia3.
  std::optional<peft::PeftType> peft_type() const;
  double effective_lr() const;
};

// One training step's record (also a line of out_dir/log.jsonl).
struct StepRecord {
  int64_t step;         // 1-based
  double loss, lr, grad_norm, seconds;
  double val_loss = -1; // when evaluated after this step
  size_t mem_bytes = 0; // the run's device's ledgered bytes after the step
};

struct MemoryPeaks {
  size_t by_tag[kTags] = {};  // each tag's own peak
  size_t total = 0;           // the peak of the sum
  TagBytes at_peak{};         // bytes per tag at that peak (they add up to total)
};

struct TrainResult {
  std::vector<StepRecord> steps;  // this process's steps (after a resume: the new ones)
  double final_val_loss = -1;
  double tokens_per_s = 0;        // training tokens per second over this process's steps (pairs: padding not counted)
  MemoryPeaks peaks;              // ledger peaks during training
  int64_t trainable_params = 0, all_params = 0;
  int rank = 0, ranks = 1;        // data parallel (mpirun): this process's rank and their number
  size_t comm_bytes_per_step = 0; // gradient bytes all-reduced per step (0 in one process)
  std::vector<size_t> optimizer_peak_by_rank;  // data parallel: each rank's ledger peak of Tag::optimizer
};

// A model being trained: the base alone (full fine-tuning) or with an adapter.
struct TrainedModel {
  std::shared_ptr<models::CausalLM> base;
  std::shared_ptr<peft::PeftModel> peft;  // null for full fine-tuning
  DType precision = DType::f32;           // the autocast dtype of loss()
  // Under mixed precision with a frozen base: the base weights' bf16 copies,
  // made once (autograd/autocast.h). Null otherwise.
  std::shared_ptr<ag::CastCache> frozen_casts;
  nn::Module& module() const;
  Device device() const;  // where its weights are
  // The scope this model's forward and backward compute under: precision, frozen_casts.
  ag::AutocastScope autocast() const { return ag::AutocastScope(precision, frozen_casts.get()); }
  // HF's shifted loss of a batch (labels = ids for text); under autocast().
  ag::Variable loss(const Batch& batch) const;
  std::pair<int64_t, int64_t> trainable_and_all_parameters() const;  // as PEFT counts them
};

// Build the model a config names (base, then the adapter), seeded, on
// config.device: made on the CPU (weights read, NF4 quantized, adapter
// added) and moved there. On the meta device (the memory planner) only
// shapes are made: a folder's config.json is read, its weights are not.
TrainedModel build_model(const TrainConfig& config, const models::Tokenizer& tokenizer);

// mp::Error when --seq (plus prompt/prefix tuning's virtual tokens) exceeds the model's positions.
void check_sequence_fits(const TrainConfig& config, const models::CausalLM& base);

// The parameters an optimizer updates: those with requires_grad.
std::vector<nn::NamedParameter> trainable_parameters(const nn::Module& m);

// A model to evaluate or generate with: a built-in name or HF folder, plus
// optionally an HF PEFT adapter folder. In eval mode.
TrainedModel load_model(const std::string& model, const std::string& adapter_dir, uint64_t seed = 0,
                        models::BaseDType base_dtype = models::BaseDType::f32, Device device = kCPU);

// Loss over held-out batches, without gradients, in eval mode: for text
// windows the mean of the batches' losses; for batches with labels (pairs)
// the token-weighted mean over every target (total NLL / number of targets).
double evaluate(const TrainedModel& m, const std::vector<Batch>& batches);
double evaluate(const TrainedModel& m, const std::vector<Tensor>& windows);

// Train `model` on `data` as `config` says (its model and data fields are not
// read: the caller built both), calling each callback at each step's end and
// around each checkpoint (train/callbacks.h). Throws mp::Error on bad input
// and on a non-finite loss (naming the step and the last checkpoint kept).
// With config.out_dir it writes checkpoints there (resumable with
// config.resume) and the final model or adapter in final/.
//
// Under mpirun (parallel::world() has N > 1 ranks) every rank computes rows
// [rank * batch, (rank + 1) * batch) of each global batch of N * batch rows
// (examples and dropout masks keyed by the global row: the same run as one
// process at batch N * batch, up to rounding), the gradients are averaged
// over the ranks by parallel::world(config.device) (MPI, through host
// buffers for sim; NCCL on CUDA, which picks this rank's GPU: on CUDA under
// mpirun call it before building `model`), and rank 0 alone writes the log,
// checkpoints and the final model. An error on one rank stops all of them. For pairs, micro-batches
// and ranks are weighted by their completion tokens (micro_batch_weights in
// train/train_step.h), so the loss is the global batch's token mean.
TrainResult train(TrainedModel& model, TrainingData& data, const TrainConfig& config,
                  const std::vector<TrainerCallback*>& callbacks = {});

// `minipeft train`: the model and the data the config names, trained as
// above with the command line's callbacks: out_dir/log.jsonl, the progress
// line on a TTY, and the MP_TRAIN_KILL_AT test hook.
TrainResult train(const TrainConfig& config, const models::Tokenizer& tokenizer, TrainedModel* model_out = nullptr);

// Where train() writes its checkpoint, its final model or adapter, and its
// log (train/train_log.h).
std::string checkpoint_path(const std::string& out_dir);
std::string final_model_dir(const std::string& out_dir);
// Copies the tokenizer files of `tokenizer_dir` (models::Tokenizer::files_in)
// into `model_dir`, as HF saves a tokenizer beside config.json; nothing when
// `tokenizer_dir` is "". mp::Error naming the file when one cannot be copied.
void save_tokenizer_files(const std::string& tokenizer_dir, const std::string& model_dir);
std::string log_path(const std::string& out_dir);

}  // namespace mp::train
