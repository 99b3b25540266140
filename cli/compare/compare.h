// `minipeft compare`: the README's main job. Pretrain a small GPT-2 on
// tinyshakespeare (or take a base model folder), adapt it to the software-
// licence corpus with full fine-tuning, LoRA, prefix and prompt tuning under
// one token budget (same steps, batch, sequence length), and measure each:
// trainable parameters, ledger peaks by category, tokens/s, held-out loss on
// the licence corpus, perplexity on held-out Shakespeare before and after
// (forgetting), bytes on disk of what each method saves, wall time.
//
//   run_compare(options, tokenizer)  -> CompareResult   (the runs; compare_run.cpp)
//   format_table(result)             -> the table, at most 100 columns (compare_table.cpp)
//   write_results_json(result, path)    out/results.json (compare_json.cpp)
//   write_plots(result, out_dir)        out/plots/loss.png, memory.png, scale.png (gnuplot; compare_plots.cpp)
//   run_scale(options, tokenizer)    -> ScaleResult: the memory story at a real shape (compare_scale.cpp)
//
// With `serving` it also trains a second LoRA adapter (on Shakespeare), puts
// both on one base and times adapter switches, and times a forward pass of
// the bare base, the unmerged and the merged LoRA model.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/tokenizer.h"
#include "train/memory_plan.h"
#include "train/trainer.h"

namespace mp::cli {

// The settings every run of compare shares are a train::TrainConfig, spelled on
// the command line as `train`'s options: its model (the built-in shape to
// pretrain), data (the adaptation text), batch, seq, steps, lr (adaptation;
// 0: the trainer's default per method), LoRA and virtual-token sizes,
// precision, recompute, seed... Each run copies it and sets its method,
// data and output folder; pretraining also its steps and LR.
train::TrainConfig compare_defaults();

struct CompareOptions {
  std::string out_dir = "compare-out";
  std::string base;                   // an HF model folder; "" pretrains one (train.model's shape)
  std::string pretrain_data;          // "" : train::data_dir()/tinyshakespeare/input.txt
  int64_t pretrain_steps = 400;
  double pretrain_lr = 1e-3;
  std::vector<std::string> methods = {"full", "lora", "prefix", "prompt"};
  train::TrainConfig train = compare_defaults();  // train.data "": train::data_dir()/legal/licenses.txt
  int64_t evals = 8;                  // held-out evaluations along each adaptation run
  bool serving = false;
  std::string scale_model = "gpt2";  // the real shape of the scale section ("none": skip it)

  // The --quick preset: a run that finishes in under 2 minutes on 2 cores.
  void apply_quick();
  // mp::Error naming the option for values no run could use.
  void validate() const;
};

struct MethodResult {
  std::string method;
  train::TrainResult train;
  double licence_loss_before = -1;   // the base's held-out licence loss (same batches)
  double licence_loss_init = -1;     // the same with this method's freshly initialised adapter
  double shakespeare_loss_after = -1;
  int64_t disk_bytes = 0;            // files in out/<method>/final
  double wall_s = 0;                 // training + evaluation + saving
  int64_t tokens = 0;                // training tokens seen
};

struct ServingResult {
  bool done = false;
  double switch_us = 0;              // mean set_adapter time between the two adapters
  // held-out loss [adapter][task]: adapter 0 licence, 1 Shakespeare; task 0 licence, 1 Shakespeare
  double loss[2][2] = {{-1, -1}, {-1, -1}};
  double base_loss[2] = {-1, -1};    // adapters disabled
  // one forward pass of (batch, seq), mean seconds
  double forward_base_s = 0, forward_unmerged_s = 0, forward_merged_s = 0;
  double merge_s = 0, unmerge_s = 0;
  int64_t forward_reps = 0;
  double second_adapter_wall_s = 0;
};

// The scale section: each method at a real shape, planned and measured.
struct ScaleRow {
  std::string title;
  train::MemoryPlan planned, measured;  // measured has step_seconds
  double tokens_per_s = 0;
};
// One model's planned peak per method (in ScaleResult::methods' order).
struct SizePoint {
  std::string model;
  int64_t all_params = 0;
  std::vector<size_t> peak;
};
struct ScaleResult {
  bool done = false;
  std::string model;
  Device device = kCPU;  // where the rows are measured (compare's --device)
  int64_t batch = 4, seq = 64;
  int timed_steps = 2;  // after one untimed step
  std::vector<ScaleRow> rows;
  int64_t size_batch = 8, size_seq = 512;  // the shape of the size sweep
  std::vector<std::string> methods;
  std::vector<SizePoint> sizes;
  double wall_s = 0;
};

struct CompareResult {
  CompareOptions options;
  std::string base_dir;              // the model every method starts from
  bool pretrained = false;
  train::TrainResult pretrain;              // when pretrained here
  double pretrain_wall_s = 0;
  int64_t base_params = 0;
  models::ModelConfig base_config;
  double shakespeare_loss_before = -1;
  std::vector<MethodResult> methods;
  ServingResult serving;
  ScaleResult scale;
  double wall_s = 0;
};

// The whole comparison. Writes out_dir/pretrain/ (when pretraining),
// out_dir/<method>/ (log.jsonl, checkpoint, final/). mp::Error on bad input.
CompareResult run_compare(const CompareOptions& options, const models::Tokenizer& tokenizer);

ScaleResult run_scale(const CompareOptions& options, const models::Tokenizer& tokenizer);

std::string format_table(const CompareResult& r);
std::string format_scale_table(const ScaleResult& s);
void write_results_json(const CompareResult& r, const std::string& path);
// Writes the plot data and script and runs gnuplot (no shell: any out_dir is
// safe). Returns a one-line note ("wrote ..." or why no plots were made);
// never throws for a missing gnuplot.
std::string write_plots(const CompareResult& r, const std::string& out_dir);

// Shared by the table and the plots: a run's bytes of one tag at the peak of the sum; bytes in MiB.
inline size_t at_peak(const train::TrainResult& t, Tag tag) { return t.peaks.at_peak[size_t(tag)]; }
inline double mib(size_t bytes) { return double(bytes) / (1 << 20); }

}  // namespace mp::cli
