// minipeft bench: training steps (forward + backward + AdamW) and forward-only
// passes of one method at a model shape, on random weights and random token
// ids: tokens/s, ledger peaks by category and the process's peak RSS, as a
// table or one JSON object (--json). bench/side_by_side.sh runs it next to
// PyTorch + HF PEFT. Under mpirun the training steps are data parallel (each
// rank a batch of --batch, gradients averaged, --zero 1 shards AdamW) and
// rank 0 reports tokens/s of the global batch; in one process as under
// mpirun it reports the gradient bytes each rank all-reduces per step.
#include <chrono>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "autograd/autocast.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/process_memory.h"
#include "parallel/communicator.h"
#include "parallel/grad_sync.h"
#include "cli/command.h"
#include "cli/train_options.h"
#include "train/data/paths.h"
#include "train/data/random_tokens.h"
#include "train/memory_plan.h"
#include "cli/tag_bytes_json.h"
#include "train/train_step.h"

namespace mp::cli {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The device's GEMM peak for operands of dtype dt, measured now: the best of
// a few (1024, 1024) @ (1024, 1024) products through the engine's matmul.
double gemm_peak_gflops(DType dt, Device device) {
  constexpr int64_t n = 1024;
  Tensor a = Tensor::empty({n, n}, dt, device), b = Tensor::empty({n, n}, dt, device),
         c = Tensor::empty({n, n}, DType::f32, device);
  ops::fill(a, 0.5);
  ops::fill(b, 0.25);
  double best = 0;
  for (int rep = 0; rep < 6; ++rep) {
    auto t0 = Clock::now();
    ops::matmul_into(a, false, b, false, c, 1.f, 0.f);
    backend(device).synchronize();
    best = std::max(best, 2.0 * n * n * n / seconds_since(t0) / 1e9);
  }
  return best;
}

// Model FLOPs per token, as llm.c and PaLM count them for MFU: 2 per weight
// of every matmul (the layers' projections and the LM head) forward, twice
// that backward with the weights trained (input and weight gradients) but
// once for a frozen base (input gradients; the adapters are left out), plus
// 12 L T C for attention's scores and weighted sums forward and backward
// (causal blocks counted in full), a third of that forward.
struct ModelFlops {
  double train, forward;
};
ModelFlops model_flops_per_token(const models::ModelConfig& m, int64_t T, bool frozen_base) {
  const double C = double(m.hidden_size), L = double(m.num_layers);
  const double weights = L * (4 * C * C + 2 * C * double(m.ffn_dim)) + double(m.vocab_size) * C;
  const double attention = 12 * L * double(T) * C;
  return {(frozen_base ? 4 : 6) * weights + attention, 2 * weights + attention / 3};
}

struct BenchOptions {
  train::TrainConfig train;
  int warmup = 1;
  bool json = false, forward_only = false;
};

void run_bench(const BenchOptions& o) {
  const train::TrainConfig& c = o.train;
  c.validate();
  parallel::Communicator& comm = parallel::world(c.device);  // on CUDA under mpirun: this rank's GPU, first
  models::Tokenizer tok = models::Tokenizer::from_dir(train::default_tokenizer_dir());
  // The GEMM peak first: the buffers its large GEMMs leave in the GEMM libraries (OpenBLAS's, when bf16 is
  // widened to f32) are then in the fixed part the plan measures, not unplanned bytes of the steps.
  const nlohmann::json gemm_peak = {{"f32", gemm_peak_gflops(DType::f32, c.device)},
                                    {"bf16", gemm_peak_gflops(DType::bf16, c.device)}};
  // The training step's plan (planned_rss_bytes), made before the model: it measures the fixed part first.
  const train::MemoryPlan plan = o.forward_only ? train::MemoryPlan{} : train::plan_training_memory(c, tok, comm.size());
  train::TrainedModel m = train::build_model(c, tok);
  Tensor ids = train::random_token_ids(c.batch, c.seq, m.base->vocab_size(), c.seed).to(c.device);  // (B, T)
  Backend& device = backend(c.device);
  const int64_t tokens = c.batch * c.seq;  // per forward pass (a training step: grad_accum of them)
  nlohmann::json out = {{"framework", "minipeft"}, {"model", c.model}, {"method", c.method},
                        {"base_dtype", models::base_dtype_name(c.base_dtype)}, {"precision", dtype_name(c.precision)},
                        {"recompute", c.recompute}, {"device", c.device.str()},
                        {"batch", c.batch}, {"seq", c.seq}, {"steps", c.steps}};

  out["gemm"] = {{"f32", ops::gemm_implementation(DType::f32, c.device)},
                 {"bf16", ops::gemm_implementation(DType::bf16, c.device)}};
  out["gemm_peak_gflops"] = gemm_peak;
  const ModelFlops per_token = model_flops_per_token(m.base->config(), c.seq, m.peft != nullptr);
  out["model_flops_per_token"] = {{"train", per_token.train}, {"forward", per_token.forward}};
  const int ranks = comm.size();
  out["ranks"] = ranks;
  out["communicator"] = comm.name();
  if (!o.forward_only) {
    const std::vector<nn::NamedParameter> params = train::trainable_parameters(m.module());
    std::unique_ptr<nn::Optimizer> opt = train::make_optimizer(c, params, comm);
    parallel::GradSync sync(comm, params, !c.recompute);  // sends only with more than one rank
    const std::vector<train::Batch> micro(size_t(c.grad_accum), ids);  // the same ids for every micro-batch
    device.empty_cache();  // as the planner does: the steps start from an empty cache
    Ledger::instance().reset_peaks();
    double total = 0, loss = 0;
    uint64_t sent = 0, flops = 0, transfers = 0;
    for (int64_t step = 0; step < o.warmup + c.steps; ++step) {  // the trainer's step: clip and grad-accum included
      auto t0 = Clock::now();
      const uint64_t before = comm.bytes(), flops_before = ops::matmul_flops(), transfers_before = host_transfers();
      loss = train::train_step(m, *opt, micro, {.clip = c.clip, .sync = ranks > 1 ? &sync : nullptr}).loss;
      device.synchronize();
      if (step >= o.warmup) {
        total += seconds_since(t0);
        sent += comm.bytes() - before;
        flops += ops::matmul_flops() - flops_before;
        transfers += host_transfers() - transfers_before;
      }
    }
    // How much of the GEMM peak of the dtype the step multiplies in a step reaches.
    const DType gemm_dtype = c.precision == DType::bf16 ? DType::bf16 : DType::f32;
    out["train_gemm_gflops"] = double(flops) / total / 1e9;
    out["train_fraction_of_gemm_peak"] = double(flops) / total / 1e9 / out["gemm_peak_gflops"][dtype_name(gemm_dtype)].get<double>();
    out["train_step_s"] = total / double(c.steps);
    // Copies between the host and the device in a step (0 on the CPU): where a GPU waits for the host.
    out["host_transfers_per_step"] = double(transfers) / double(c.steps);
    out["train_tokens_per_s"] = double(tokens * ranks * c.grad_accum * c.steps) / total;  // the global batch
    out["train_model_tflops"] = out["train_tokens_per_s"].get<double>() * per_token.train / 1e12;  // MFU's numerator
    out["allreduce_bytes_per_step"] = sync.bytes_per_step();  // the trainable gradients, f32: what each rank sends
    out["comm_bytes_per_step"] = sent / uint64_t(c.steps);    // measured: all-reduce plus ZeRO's all-gather
    out["zero"] = c.zero;
    out["final_loss"] = loss;
    nlohmann::json peaks;
    const Ledger& ledger = Ledger::instance();
    for (int t = 0; t < kTags; ++t) peaks[std::string(tag_name(Tag(t)))] = ledger.peak(Tag(t), c.device);
    peaks["total"] = ledger.peak_total(c.device);  // the peak of the sum; the tags' entries are their own peaks
    out["peak_bytes"] = peaks;
    out["at_peak_bytes"] = cli::tag_bytes_json(ledger.peak_moment(c.device).by_tag);
    out["peak_reserved_bytes"] = ledger.peak_reserved(c.device);  // the allocator's blocks, rounded
    // The process's peak so far: what planned_rss_bytes plans. The forward
    // passes below may go higher (without grad the LM head's logits are whole).
    out["train_peak_rss_bytes"] = peak_resident_bytes();
  }
  {
    ag::NoGrad no_grad;
    ag::AutocastScope autocast = m.autocast();  // the forward passes compute as the training steps do
    m.module().eval();
    double total = 0;
    for (int64_t step = 0; step < o.warmup + c.steps; ++step) {
      auto t0 = Clock::now();
      m.peft ? m.peft->forward(ids) : m.base->forward(ids);
      device.synchronize();
      if (step >= o.warmup) total += seconds_since(t0);
    }
    out["forward_s"] = total / double(c.steps);
    out["forward_tokens_per_s"] = double(tokens * c.steps) / total;
    out["forward_model_tflops"] = out["forward_tokens_per_s"].get<double>() * per_token.forward / 1e12;
  }
  out["peak_rss_bytes"] = peak_resident_bytes();
  if (!o.forward_only) {
    out["fixed_bytes"] = plan.fixed_bytes;
    out["planned_rss_bytes"] = plan.rss_bytes;
    out["planned_peak_bytes"] = plan.peak_total;  // beside peak_bytes.total, the measured one
    out["planned_reserved_peak_bytes"] = plan.reserved_peak;  // beside peak_reserved_bytes
    out["planned_tag_peak_bytes"] = cli::tag_bytes_json(plan.tag_peaks);  // beside peak_bytes' tags
  }
  auto [trainable, all] = m.trainable_and_all_parameters();
  out["trainable_params"] = trainable;
  out["all_params"] = all;
  if (comm.rank() != 0) return;  // the other ranks print only errors

  if (o.json) {
    fmt::print("{}\n", out.dump());
    return;
  }
  fmt::print("{} {} (base {}, precision {}) B={} T={}: trainable {} of {} parameters\n", c.model, c.method,
             models::base_dtype_name(c.base_dtype), dtype_name(c.precision), c.batch, c.seq, trainable, all);
  fmt::print("  gemm        f32: {} ({:.0f} GFLOP/s), bf16: {} ({:.0f} GFLOP/s)\n", out["gemm"]["f32"].get<std::string>(),
             out["gemm_peak_gflops"]["f32"].get<double>(), out["gemm"]["bf16"].get<std::string>(),
             out["gemm_peak_gflops"]["bf16"].get<double>());
  if (out.contains("train_tokens_per_s")) {
    fmt::print("  train step  {:8.3f} s   {:9.1f} tokens/s   {:.3f} model TFLOP/s{}\n", out["train_step_s"].get<double>(),
               out["train_tokens_per_s"].get<double>(), out["train_model_tflops"].get<double>(),
               ranks > 1 ? fmt::format(" ({} ranks)", ranks) : "");
    fmt::print("  GEMMs in the step {:.0f} GFLOP/s, {:.2f} of the peak\n", out["train_gemm_gflops"].get<double>(),
               out["train_fraction_of_gemm_peak"].get<double>());
    fmt::print("  data parallel: {:.3f} MiB of gradients all-reduced per step ({:.3f} MiB measured here)\n",
               out["allreduce_bytes_per_step"].get<double>() / (1 << 20),
               out["comm_bytes_per_step"].get<double>() / (1 << 20));
  }
  fmt::print("  forward     {:8.3f} s   {:9.1f} tokens/s   {:.3f} model TFLOP/s\n", out["forward_s"].get<double>(),
             out["forward_tokens_per_s"].get<double>(), out["forward_model_tflops"].get<double>());
  if (out.contains("peak_bytes")) {
    fmt::print("  ledger         at the peak    own peak\n");
    for (int t = 0; t < kTags; ++t) {
      const std::string tag(tag_name(Tag(t)));
      fmt::print("  {:<12} {:10.1f} MiB {:7.1f} MiB\n", tag, out["at_peak_bytes"][tag].get<double>() / (1 << 20),
                 out["peak_bytes"][tag].get<double>() / (1 << 20));
    }
    fmt::print("  peak total   {:10.1f} MiB   (the peak of the sum; planned {:.1f} MiB)\n",
               out["peak_bytes"]["total"].get<double>() / (1 << 20), double(plan.peak_total) / (1 << 20));
    fmt::print("  reserved     {:10.1f} MiB   (the allocator's blocks at their peak; planned {:.1f} MiB)\n",
               out["peak_reserved_bytes"].get<double>() / (1 << 20), double(plan.reserved_peak) / (1 << 20));
  }
  fmt::print("  peak RSS     {:10.1f} MiB", double(out["peak_rss_bytes"].get<size_t>()) / (1 << 20));
  if (out.contains("train_peak_rss_bytes")) {
    const double rss = double(out["train_peak_rss_bytes"].get<size_t>()), planned = double(plan.rss_bytes);
    fmt::print("   (training steps {:.1f} MiB; planned {:.1f} MiB, {:+.1f}%; fixed part {:.1f} MiB)", rss / (1 << 20),
               planned / (1 << 20), 100 * (planned - rss) / rss, double(plan.fixed_bytes) / (1 << 20));
  }
  fmt::print("\n");
}

}  // namespace

void add_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  o->train.model = "gpt2";
  o->train.steps = 3;
  CLI::App* cmd = app.add_subcommand("bench", "time training steps and measure memory by category for one method");
  add_method_options(cmd, o->train);
  add_optim_options(cmd, o->train);
  add_device_option(cmd, o->train);
  cmd->add_option("--warmup-steps", o->warmup, "untimed steps first")->capture_default_str();
  cmd->add_flag("--json", o->json, "print one JSON object");
  cmd->add_flag("--forward-only", o->forward_only, "skip the training steps");
  cmd->callback([o] { run_bench(*o); });
}

}  // namespace mp::cli
