// minipeft info: a model's shape and parameters, the method's trainable line,
// and the planned memory of one training step (train/memory_plan.h) for
// exactly the run a `train` command with the same options would do: change
// `train` to `info` to see whether it fits: the planned resident memory
// (planned_rss_bytes: the process's fixed part + the planned peak); with
// --device cuda, the GPU memory the CUDA allocator reserves (planned without
// a GPU). --fit-in finds the largest batch whose plan is under a budget.
#include <fmt/format.h>

#include <cctype>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/ops.h"
#include "models/load.h"
#include "cli/command.h"
#include "cli/train_options.h"
#include "train/memory_plan.h"
#include "train/data/paths.h"
#include "cli/tag_bytes_json.h"

namespace mp::cli {

namespace {

double mib(size_t bytes) { return double(bytes) / (1 << 20); }

// "16GiB", "512 MiB", "2e9", "8GB" -> bytes. Binary units KiB..TiB, decimal KB..TB, or none (bytes).
size_t parse_bytes(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    fail("--fit-in {}: not a size (examples: 16GiB, 512MiB, 8GB)", text);
  }
  std::string unit = text.substr(used);
  unit.erase(0, unit.find_first_not_of(' '));
  static const std::pair<const char*, double> units[] = {
      {"", 1},         {"B", 1},         {"KiB", 1024.0},  {"MiB", 1048576.0}, {"GiB", 1073741824.0},
      {"TiB", 1099511627776.0}, {"KB", 1e3}, {"MB", 1e6},  {"GB", 1e9},        {"TB", 1e12}};
  for (const auto& [name, scale] : units)
    if (unit == name) {
      if (!(value > 0) || value * scale > 1e18) fail("--fit-in {}: must be a positive size", text);
      return size_t(value * scale);
    }
  fail("--fit-in {}: unknown unit '{}' (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)", text, unit);
}

struct InfoOptions {
  train::TrainConfig train;
  bool no_progress = false;  // accepted as train accepts it
  std::string adapter;
  std::string fit_in;
  int ranks = 1;
  bool json = false;
};

void print_adapter_summary(const InfoOptions& o) {
  train::TrainedModel m = train::load_model(o.train.model, o.adapter, o.train.seed, o.train.base_dtype);
  fmt::print("adapter {}: {}\n{}\n", o.adapter, peft::peft_type_name(m.peft->peft_config().peft_type()),
             m.peft->trainable_parameters_line());
}

void run_info(const InfoOptions& o) {
  const train::TrainConfig& c = o.train;
  c.validate();
  if (o.ranks < 1) fail("--ranks must be at least 1, got {}", o.ranks);
  const models::ModelConfig mc = models::config_of(c.model);
  if (!o.adapter.empty()) {
    fmt::print("{}: {} layers, {} heads, width {}, MLP {}, vocab {}, {} positions\n", models::arch_name(mc.arch),
               mc.num_layers, mc.num_heads, mc.hidden_size, mc.ffn_dim, mc.vocab_size, mc.max_positions);
    print_adapter_summary(o);
    return;
  }
  models::Tokenizer tok = models::Tokenizer::from_dir(train::default_tokenizer_dir());
  const train::MemoryPlan plan = train::plan_training_memory(c, tok, o.ranks);
  const size_t budget = o.fit_in.empty() ? 0 : parse_bytes(o.fit_in);
  const int64_t largest = budget ? train::largest_fitting_batch(c, tok, budget, o.ranks) : 0;

  // What runs the step's GEMMs on this machine, or on the GPU planned for (the workspace above is theirs).
  const bool gpu = c.device.type == DeviceType::cuda;
  const Device gemm_device = gpu ? train::plan_device(c.device) : kCPU;
  const nlohmann::json gemm_json = {{"f32", ops::gemm_implementation(DType::f32, gemm_device)},
                                    {"bf16", ops::gemm_implementation(DType::bf16, gemm_device)}};
  if (o.json) {
    nlohmann::json j = {{"model", c.model},
                        {"arch", models::arch_name(mc.arch)},
                        {"method", c.method},
                        {"use_dora", c.use_dora},
                        {"modules_to_save", c.modules_to_save},
                        {"batch", c.batch},
                        {"seq", c.seq},
                        {"grad_accum", c.grad_accum},
                        {"ranks", o.ranks},
                        {"zero", c.zero},
                        {"base_dtype", models::base_dtype_name(c.base_dtype)},
                        {"precision", dtype_name(c.precision)},
                        {"trainable_params", plan.trainable_params},
                        {"all_params", plan.all_params},
                        {"peak_total_bytes", plan.peak_total},
                        {"setup_peak_bytes", plan.setup_peak},
                        {"fixed_bytes", plan.fixed_bytes},
                        {"planned_rss_bytes", plan.rss_bytes},
                        {"device", c.device.str()},
                        {"reserved_peak_bytes", plan.reserved_peak},
                        {"setup_reserved_peak_bytes", plan.setup_reserved_peak},
                        {"planned_device_bytes", plan.device_bytes()},
                        {"at_peak_bytes", cli::tag_bytes_json(plan.at_peak.by_tag)},
                        {"tag_peak_bytes", cli::tag_bytes_json(plan.tag_peaks)},
                        {"peak_phase", plan.at_peak.phase},
                        {"peak_op", plan.at_peak.op},
                        {"gemm", gemm_json}};
    if (c.base_dtype == models::BaseDType::nf4)
      j["base_storage_bytes"] = {{"nf4", plan.storage.nf4_bytes}, {"bf16", plan.storage.bf16_bytes},
                                 {"f32", plan.storage.f32_bytes}};
    if (budget) {
      j["fit_in_bytes"] = budget;
      j["largest_batch"] = largest;
    }
    fmt::print("{}\n", j.dump());
    return;
  }
  fmt::print("{}: {} layers, {} heads, width {}, MLP {}, vocab {}, {} positions\n", models::arch_name(mc.arch),
             mc.num_layers, mc.num_heads, mc.hidden_size, mc.ffn_dim, mc.vocab_size, mc.max_positions);
  std::string saved;  // " + modules_to_save ln_f,mlp.c_proj"
  for (const std::string& m : c.modules_to_save) saved += (saved.empty() ? " + modules_to_save " : ",") + m;
  fmt::print("{}{}{}: {}\n", c.method, c.use_dora ? " (DoRA)" : "", saved,
             peft::trainable_line(plan.trainable_params, plan.all_params));
  if (c.base_dtype == models::BaseDType::nf4)
    fmt::print("base weights: {} Linear matrices in nf4 {:.1f} MiB (codes and constants), bf16 {:.1f} MiB "
               "(embeddings), f32 {:.1f} MiB (layer norms, biases)\n",
               plan.storage.nf4_matrices, mib(plan.storage.nf4_bytes), mib(plan.storage.bf16_bytes),
               mib(plan.storage.f32_bytes));
  fmt::print("GEMMs: f32 {}, bf16 {}\n", gemm_json["f32"].get<std::string>(), gemm_json["bf16"].get<std::string>());
  fmt::print("planned memory of one training step on {} (B={}, T={}, grad-accum {}, AdamW{}, base {}, precision {}):\n",
             c.device.str(), c.batch, c.seq, c.grad_accum,
             o.ranks > 1 ? fmt::format(", rank 0 of {}{}", o.ranks, c.zero ? " with ZeRO-1" : "") : std::string(),
             models::base_dtype_name(c.base_dtype), dtype_name(c.precision));
  fmt::print("  {:<12} {:>12} {:>12}\n", "tag", "at the peak", "own peak");
  for (int t = 0; t < kTags; ++t)
    fmt::print("  {:<12} {:>8.1f} MiB {:>8.1f} MiB\n", tag_name(Tag(t)), mib(plan.at_peak.by_tag[size_t(t)]),
               mib(plan.tag_peaks[size_t(t)]));
  fmt::print("  {:<12} {:>8.1f} MiB   (the peak of the sum, in {}{})\n", "peak total", mib(plan.peak_total),
             plan.at_peak.phase.empty() ? "set-up" : plan.at_peak.phase,
             plan.at_peak.op.empty() ? "" : ", op " + plan.at_peak.op);
  fmt::print("  {:<12} {:>8.1f} MiB   (the peak of the sum while the model is built)\n", "set-up peak",
             mib(plan.setup_peak));
  fmt::print("  {:<12} {:>8.1f} MiB   (the allocator's blocks at their peak, in its block sizes{})\n", "reserved",
             mib(plan.reserved_peak), gpu ? ": 512 B steps, 2 MiB from 1 MiB" : "");
  if (gpu) {
    fmt::print("  {:<12} {:>8.1f} MiB   (the higher of the steps' and the set-up's reserved peaks; the CUDA context "
               "and cuBLAS's workspace come on top, not planned)\n",
               "planned GPU", mib(plan.device_bytes()));
  } else {
    fmt::print("  {:<12} {:>8.1f} MiB   (program, libraries, threads, GEMM library: measured in this process)\n",
               "fixed part", mib(plan.fixed_bytes));
    fmt::print("  {:<12} {:>8.1f} MiB   (planned resident memory: the fixed part + the higher peak)\n", "planned RSS",
               mib(plan.rss_bytes));
  }
  if (budget) {
    if (largest == 0) fmt::print("not even --batch 1 fits in {:.1f} MiB\n", mib(budget));
    else fmt::print("largest --batch that fits in {:.1f} MiB: {}\n", mib(budget), largest);
  }
}

}  // namespace

void add_info(CLI::App& app) {
  auto o = std::make_shared<InfoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "info", "a model's shape, the method's trainable parameters, and the planned memory of one training step "
              "(takes every option train takes)");
  add_method_options(cmd, o->train);
  add_optim_options(cmd, o->train);
  add_run_options(cmd, o->train, o->no_progress);
  cmd->add_option("--adapter", o->adapter, "summarise this HF PEFT adapter folder instead of planning");
  cmd->add_option("--fit-in", o->fit_in, "a memory budget (16GiB, 512MiB, 8GB): report the largest --batch that fits");
  cmd->add_option("--ranks", o->ranks, "plan rank 0 of a data-parallel run of this many ranks (mpirun -np)")
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "print one JSON object");
  cmd->callback([o] { run_info(*o); });
}

}  // namespace mp::cli
