// The options `train`, `bench` and `compare` share: what model and method,
// and the optimisation settings, bound to a TrainConfig.
#pragma once
#include <CLI/CLI.hpp>

#include "train/trainer.h"

namespace mp::cli {

// --model, --base-dtype and the method options (--method, --lora-*, --virtual-tokens, ...).
void add_method_options(CLI::App* cmd, train::TrainConfig& c);
// --layers, --width, --heads: a random model of a built-in shape with these sizes changed.
void add_shape_options(CLI::App* cmd, train::ModelShape& s);
// --batch, --seq, --grad-accum, --steps, --lr, --schedule, --warmup, --clip, --seed, --precision, ...
void add_optim_options(CLI::App* cmd, train::TrainConfig& c);
// --data, --val-fraction, --eval-every, --eval-batches, --checkpoint-every, --out, --resume, --stop-after,
// --no-progress, --device: what a run reads and writes, and where it runs.
void add_run_options(CLI::App* cmd, train::TrainConfig& c, bool& no_progress);
// --device cpu|cuda|cuda:N|sim (bench takes it without the run options).
void add_device_option(CLI::App* cmd, train::TrainConfig& c);

}  // namespace mp::cli
