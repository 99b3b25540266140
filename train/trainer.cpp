#include "train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "parallel/communicator.h"
#include "parallel/grad_sync.h"
#include "engine/backend.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "models/load.h"
#include "models/nf4_base.h"
#include "models/tokenizer.h"
#include "nn/adamw.h"
#include "nn/clip_grad.h"
#include "nn/lr_schedule.h"
#include "nn/rng.h"
#include "nn/safetensors.h"
#include "nn/state_dict.h"
#include "train/checkpoint_meta.h"
#include "train/kill_hook.h"
#include "train/data/pairs.h"
#include "train/progress.h"
#include "train/train_step.h"
#include "train/train_log.h"
#include "train/data/training_data.h"

namespace mp::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::optional<peft::PeftType> TrainConfig::peft_type() const {
  if (method == "full") return std::nullopt;
  if (method == "lora") return peft::PeftType::lora;
  if (method == "prompt") return peft::PeftType::prompt_tuning;
  if (method == "prefix") return peft::PeftType::prefix_tuning;
  if (method == "ia3") return peft::PeftType::ia3;
  fail("unknown method '{}' (expected full, lora, prompt, prefix or ia3)", method);
}

// Prompt and prefix tuning put virtual tokens before the input; LoRA, IA3 and full fine-tuning none.
static bool has_virtual_tokens(std::optional<peft::PeftType> type) {
  return type == peft::PeftType::prompt_tuning || type == peft::PeftType::prefix_tuning;
}

void TrainConfig::validate() const {
  const std::optional<peft::PeftType> type = peft_type();
  auto positive = [](int64_t v, const char* name) {
    if (v <= 0) fail("--{} must be positive, got {}", name, v);
  };
  positive(batch, "batch");
  positive(seq, "seq");
  positive(grad_accum, "grad-accum");
  if (shape.any()) shaped_config(model, shape);  // a bad shape fails before any data is read
  positive(steps, "steps");
  if (batch * seq > (int64_t(1) << 24)) fail("--batch {} x --seq {} is absurdly large", batch, seq);
  if (steps > 100'000'000) fail("--steps {} is absurdly large", steps);
  if (lr < 0 || !std::isfinite(lr)) fail("--lr must be a finite number >= 0, got {}", lr);
  if (clip < 0) fail("--clip must be >= 0, got {}", clip);
  if (warmup < 0 || warmup > steps) fail("--warmup {} must be in [0, --steps {}]", warmup, steps);
  if (eval_every < 0 || checkpoint_every < 0 || eval_batches <= 0)
    fail("--eval-every and --checkpoint-every must be >= 0 and --eval-batches positive");
  if ((checkpoint_every > 0 || resume) && out_dir.empty()) fail("checkpoints and --resume need --out");
  if (stop_after < 0) fail("--stop-after must be >= 0, got {}", stop_after);
  if (packing && !is_pairs_file(data)) fail("--packing packs the examples of a pairs file (.jsonl), not {}", data);
  if (packing && has_virtual_tokens(type))
    fail("--packing works with --method full, lora or ia3: a soft prompt or prefix per row would cross the examples");
  if (device.is_meta()) fail("--device meta holds shapes, not values: `minipeft info` plans a run on it");
  if (packing && device.type == DeviceType::cuda)
    fail("--packing runs on the CPU (and sim) only: the CUDA attention kernel has no segment ids");
  if (zero != 0 && zero != 1) fail("--zero {}: only stage 1 (the optimizer state sharded) is implemented, or 0", zero);
  if (use_dora && type != peft::PeftType::lora) fail("--use-dora is a LoRA option: use it with --method lora, not {}", method);
  if (!modules_to_save.empty() && type != peft::PeftType::lora && type != peft::PeftType::ia3)
    fail("--modules-to-save trains modules beside an adapter: use it with --method lora or ia3, not {}", method);
  if (base_dtype != models::BaseDType::f32 && !type)
    fail("--base-dtype {} keeps the base frozen: use it with --method lora, prompt or prefix, not full",
         models::base_dtype_name(base_dtype));
}

// PEFT methods train far fewer parameters and take larger steps (IA3: T-Few's 3e-3).
double TrainConfig::effective_lr() const {
  if (lr > 0) return lr;
  const std::optional<peft::PeftType> type = peft_type();
  if (!type) return 3e-4;
  if (*type == peft::PeftType::lora) return 1e-3;
  return *type == peft::PeftType::ia3 ? 3e-3 : 3e-2;
}

// QLoRA: freeze the base and quantize its Linear weights before PEFT attaches
// adapters (which stay f32 and trainable).
static void quantize_frozen_base(models::CausalLM& base) {
  base.freeze();
  models::quantize_base_nf4(base);
}

std::string checkpoint_path(const std::string& out_dir) { return out_dir + "/checkpoint.safetensors"; }
std::string final_model_dir(const std::string& out_dir) { return out_dir + "/final"; }

void save_tokenizer_files(const std::string& tokenizer_dir, const std::string& model_dir) {
  if (tokenizer_dir.empty()) return;
  const std::optional<std::array<std::string, 2>> files = models::Tokenizer::files_in(tokenizer_dir);
  if (!files) fail("{}: no tokenizer files (vocab.json + merges.txt, or encoder.json + vocab.bpe)", tokenizer_dir);
  for (const std::string& f : *files) {
    const std::filesystem::path to = std::filesystem::path(model_dir) / std::filesystem::path(f).filename();
    if (std::filesystem::exists(to) && std::filesystem::equivalent(f, to)) continue;  // saved over its own folder
    std::error_code error;
    std::filesystem::copy_file(f, to, std::filesystem::copy_options::overwrite_existing, error);
    if (error) fail("{}: cannot copy the tokenizer file to {}: {}", f, to.string(), error.message());
  }
}
std::string log_path(const std::string& out_dir) { return out_dir + "/log.jsonl"; }

nn::Module& TrainedModel::module() const { return peft ? static_cast<nn::Module&>(*peft) : *base; }

Device TrainedModel::device() const { return base->token_embedding_weight().value().device(); }

ag::Variable TrainedModel::loss(const Batch& batch) const {
  ag::AutocastScope scope = autocast();
  const Tensor& labels = batch.labels.defined() ? batch.labels : batch.ids;
  auto given = [](const Tensor& t) { return t.defined() ? &t : nullptr; };
  models::ForwardOptions opt;
  opt.attention_mask = given(batch.attention_mask);
  opt.position_ids = given(batch.position_ids);
  opt.segment_ids = given(batch.segment_ids);
  return peft ? peft->loss(batch.ids, labels, opt) : base->loss(batch.ids, labels, opt);
}

// An NF4 weight is no parameter (it cannot be trained) but counts among all of
// them, as HF PEFT counts a 4-bit base.
std::pair<int64_t, int64_t> TrainedModel::trainable_and_all_parameters() const {
  auto [trainable, all] =
      peft ? peft->trainable_and_all_parameters() : std::pair{base->num_parameters(true), base->num_parameters()};
  return {trainable, all + models::base_storage(*base).nf4_elements};
}

static peft::PeftConfig peft_config_for(const TrainConfig& c, peft::PeftType type, const models::ModelConfig& model) {
  if (type == peft::PeftType::lora) {
    peft::LoraConfig lora;
    lora.r = c.lora_r;
    lora.lora_alpha = c.lora_alpha;
    lora.lora_dropout = c.lora_dropout;
    lora.use_rslora = c.use_rslora;
    lora.use_dora = c.use_dora;
    bool gpt2 = model.arch == models::Arch::gpt2;
    lora.fan_in_fan_out = gpt2;
    lora.target_modules = c.lora_targets;
    lora.modules_to_save = c.modules_to_save;
    if (lora.target_modules.empty())
      lora.target_modules = gpt2 ? std::vector<std::string>{"c_attn"} : std::vector<std::string>{"q_proj", "v_proj"};
    return peft::PeftConfig::lora(lora);
  }
  if (type == peft::PeftType::ia3) {  // empty lists: PEFT's defaults for the model type (get_peft_model)
    peft::Ia3Config ia3;
    ia3.target_modules = c.ia3_targets;
    ia3.feedforward_modules = c.ia3_feedforward;
    ia3.modules_to_save = c.modules_to_save;
    return peft::PeftConfig::ia3(ia3);
  }
  if (type == peft::PeftType::prompt_tuning) {
    peft::PromptTuningConfig prompt;
    prompt.num_virtual_tokens = c.num_virtual_tokens;
    if (!c.prompt_init_text.empty()) {
      prompt.prompt_tuning_init = peft::PromptTuningInit::text;
      prompt.prompt_tuning_init_text = c.prompt_init_text;
    }
    return peft::PeftConfig::prompt_tuning(prompt);
  }
  peft::PrefixTuningConfig prefix;
  prefix.num_virtual_tokens = c.num_virtual_tokens;
  prefix.prefix_projection = c.prefix_projection;
  prefix.encoder_hidden_size = c.encoder_hidden_size > 0 ? c.encoder_hidden_size : model.hidden_size;
  return peft::PeftConfig::prefix_tuning(prefix);
}

TrainedModel build_model(const TrainConfig& config, const models::Tokenizer& tokenizer) {
  nn::manual_seed(config.seed);
  const Device device = config.device;
  TrainedModel m;
  {
    DeviceScope made_on(device.is_meta() ? device : kCPU);  // weights are read on the host
    m.base = std::shared_ptr<models::CausalLM>(
        device.is_meta() || config.shape.any()
            ? models::make_model(shaped_config(config.model, config.shape), config.seed, weight_dtype(config.base_dtype))
            : models::create_model(config.model, config.seed, weight_dtype(config.base_dtype)));
  }
  DeviceScope scope(device);
  m.base->to(device);
  if (config.base_dtype == models::BaseDType::nf4) quantize_frozen_base(*m.base);
  if (const std::optional<peft::PeftType> type = config.peft_type())
    m.peft = peft::get_peft_model(m.base, peft_config_for(config, *type, m.base->config()), "default", &tokenizer);
  m.base->gradient_checkpointing_enable(config.recompute);
  m.precision = config.precision;
  if (m.precision == DType::bf16 && m.peft) {  // the base is frozen: cast its weights once, not every step
    m.frozen_casts = std::make_shared<ag::CastCache>();
    for (const ag::Variable& p : m.base->parameters())
      if (!p.requires_grad()) m.frozen_casts->add_frozen(p.value());
  }
  m.module().train();
  return m;
}

void check_sequence_fits(const TrainConfig& config, const models::CausalLM& base) {
  const int64_t virtual_tokens = has_virtual_tokens(config.peft_type()) ? config.num_virtual_tokens : 0;
  if (base.max_positions() < config.seq + virtual_tokens)
    fail("--seq {}{} exceeds the model's {} positions", config.seq,
         virtual_tokens ? fmt::format(" + {} virtual tokens", virtual_tokens) : std::string(), base.max_positions());
}

TrainedModel load_model(const std::string& model, const std::string& adapter_dir, uint64_t seed,
                        models::BaseDType base_dtype, Device device) {
  TrainedModel m;
  m.base = std::shared_ptr<models::CausalLM>(models::create_model(model, seed, weight_dtype(base_dtype)));
  m.base->to(device);  // then NF4-quantized there; an adapter is read on the host and moved
  if (base_dtype == models::BaseDType::nf4) quantize_frozen_base(*m.base);
  if (!adapter_dir.empty()) m.peft = peft::load_peft_model(m.base, adapter_dir);
  m.module().to(device);
  m.module().eval();
  return m;
}

// Held-out batches' summed loss and its weight: for pairs each batch's mean
// times its targets, for text windows each batch counts once.
struct LossSum {
  double sum = 0, weight = 0;
  double mean() const { return weight == 0 ? -1 : sum / weight; }
};

static LossSum held_out_loss(const TrainedModel& m, const std::vector<Batch>& batches) {
  ag::NoGrad no_grad;
  bool was_training = m.module().is_training();
  m.module().eval();
  LossSum s;
  for (const Batch& b : batches) {
    const double weight = b.labels.defined() ? double(b.targets()) : 1.0;
    if (weight > 0) s.sum += weight * m.loss(b.to(m.device())).item();  // batches made on the host move there
    s.weight += weight;
  }
  m.module().train(was_training);
  return s;
}

double evaluate(const TrainedModel& m, const std::vector<Batch>& batches) { return held_out_loss(m, batches).mean(); }

double evaluate(const TrainedModel& m, const std::vector<Tensor>& windows) {
  return evaluate(m, std::vector<Batch>(windows.begin(), windows.end()));
}

std::vector<nn::NamedParameter> trainable_parameters(const nn::Module& m) {
  std::vector<nn::NamedParameter> out;
  for (auto& [name, p] : m.named_parameters())
    if (p.requires_grad()) out.emplace_back(name, p);
  return out;
}

// ---- checkpoints: one safetensors file with the trainable parameters
// ("param.<name>"), the optimizer state ("optim.<key>") and, in the metadata,
// the step, the RNG counters and the config it was made with.

// What a resumed run must share with the run that wrote the checkpoint: the
// global batch, not how many ranks share it.
static nlohmann::json identity_of(const TrainConfig& c, int ranks) {
  nlohmann::json id = {{"model", c.model}, {"method", c.method},         {"batch", c.batch * ranks},
                       {"seq", c.seq},     {"grad_accum", c.grad_accum}, {"seed", c.seed}};
  const std::optional<peft::PeftType> type = c.peft_type();
  if (type == peft::PeftType::lora) id["lora_r"] = c.lora_r;
  if (has_virtual_tokens(type)) id["num_virtual_tokens"] = c.num_virtual_tokens;
  if (c.base_dtype != models::BaseDType::f32) id["base_dtype"] = std::string(models::base_dtype_name(c.base_dtype));
  if (c.precision != DType::f32) id["precision"] = std::string(dtype_name(c.precision));
  if (c.packing) id["packing"] = true;
  if (c.shape.any()) id["shape"] = {c.shape.layers, c.shape.width, c.shape.heads};
  return id;
}

// `optim`: the optimizer's state_dict() (with ZeRO, gathered by every rank).
static void save_checkpoint(const std::string& path, const TrainConfig& c, int ranks,
                            const std::vector<nn::NamedParameter>& params, const nn::TensorMap& optim, int64_t step) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [name, p] : params) tensors.emplace_back("param." + name, p.value());
  for (const auto& [key, t] : optim) tensors.emplace_back("optim." + key, t);
  const CheckpointMeta meta{step, nn::rng_state(), identity_of(c, ranks), ranks};
  nn::save_safetensors(path, tensors, {{kCheckpointMetaKey, checkpoint_meta_json(meta)}});
}

// Returns the step the checkpoint was written after.
static int64_t load_checkpoint(const std::string& path, const TrainConfig& c, int ranks,
                               const std::vector<nn::NamedParameter>& params, nn::Optimizer& opt) {
  if (!fs::exists(path)) fail("--resume: no checkpoint at {}", path);
  nn::SafetensorsFile file = nn::SafetensorsFile::open(path);
  const CheckpointMeta meta = read_checkpoint_meta(file, path);
  if (meta.run != identity_of(c, ranks))
    fail("{} was written by a different run ({}); this run is {}", path, meta.run.dump(),
         identity_of(c, ranks).dump());
  const int saved_ranks = meta.ranks;
  if (saved_ranks != ranks && parallel::world().rank() == 0)
    std::fprintf(stderr, "note: resuming on %d rank(s) a run checkpointed on %d: the same global batch of %lld, resharded\n",
                 ranks, saved_ranks, static_cast<long long>(c.batch * ranks));
  for (const auto& [name, p] : params) {
    const Shape& saved = file.info("param." + name).shape;
    if (saved != p.shape())
      fail("{}: param.{} has shape {}, the model {}", path, name, shape_str(saved), shape_str(p.shape()));
    file.load_into("param." + name, p.value());
  }
  nn::TensorMap state;
  for (const std::string& key : file.names())
    if (key.rfind("optim.", 0) == 0) {
      DType dt = file.info(key).dtype == nn::StDType::I32 ? DType::i32 : DType::f32;
      state[key.substr(6)] = file.load(key, dt, Tag::optimizer);
    }
  opt.load_state_dict(state);
  nn::set_rng_state(meta.rng);
  return meta.step;
}

static MemoryPeaks ledger_peaks(Device d) {
  MemoryPeaks p;
  const Ledger& l = Ledger::instance();
  for (int t = 0; t < kTags; ++t) p.by_tag[t] = l.peak(Tag(t), d);
  p.total = l.peak_total(d);
  p.at_peak = l.peak_moment(d).by_tag;
  return p;
}

// A run killed while writing its checkpoint leaves the temporary beside it
// (nn/atomic_file.h: "<path>.tmp.<pid>"); a resumed run removes it.
static void remove_stale_temporaries(const std::string& path) {
  const fs::path file(path);
  const std::string prefix = file.filename().string() + ".tmp.";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(file.parent_path(), ec))
    if (e.path().filename().string().rfind(prefix, 0) == 0) fs::remove(e.path(), ec);
}

// evaluate() with the batches dealt out to the ranks (rank r takes batches r,
// r + N, ...): the mean over all of them, in 1/N of the time, and no rank
// idles in a collective while another evaluates.
static double evaluate_shared(const TrainedModel& m, const std::vector<Batch>& batches, parallel::Communicator& comm) {
  if (comm.size() == 1 || batches.empty()) return evaluate(m, batches);
  std::vector<Batch> mine;
  for (size_t k = size_t(comm.rank()); k < batches.size(); k += size_t(comm.size())) mine.push_back(batches[k]);
  LossSum s = held_out_loss(m, mine);
  s.sum = parallel::all_reduce_sum(comm, s.sum);
  s.weight = parallel::all_reduce_sum(comm, s.weight);
  return s.mean();
}

// The tensors' bytes of the checkpoint after this step (what on_save reports).
static size_t checkpoint_bytes(const std::vector<nn::NamedParameter>& params, const nn::TensorMap& optim) {
  size_t bytes = 0;
  for (const auto& [name, p] : params) bytes += p.value().nbytes();
  for (const auto& [key, t] : optim) bytes += t.nbytes();
  return bytes;
}

// Runs f on every rank; under mpirun an error on one rank stops them all
// (the others would wait for it in a collective).
template <class F>
static TrainResult on_every_rank(parallel::Communicator& comm, F f) {
  if (comm.size() == 1) return f();
  try {
    return f();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: rank %d of %d: %s\n", comm.rank(), comm.size(), e.what());
    comm.abort(1);
  }
}

static TrainResult train_loop(TrainedModel& m, TrainingData& data, const TrainConfig& config,
                              const std::vector<TrainerCallback*>& callbacks, parallel::Communicator& comm) {
  config.validate();
  const int ranks = comm.size();
  const bool writer = comm.rank() == 0;  // of checkpoints and the final model
  const nn::BatchRows rows = ranks > 1 ? nn::BatchRows{comm.rank() * config.batch, config.batch} : nn::BatchRows{};
  nn::BatchRowsScope rows_scope(rows);
  if (!config.out_dir.empty() && writer) {
    std::error_code ec;
    fs::create_directories(config.out_dir, ec);
    if (ec || access(config.out_dir.c_str(), W_OK) != 0) fail("output folder {} is not writable", config.out_dir);
  }
  check_sequence_fits(config, *m.base);
  std::vector<nn::NamedParameter> params = trainable_parameters(m.module());
  std::unique_ptr<nn::Optimizer> optimizer = make_optimizer(config, params, comm);
  nn::Optimizer& opt = *optimizer;
  nn::LrSchedule schedule = nn::LrSchedule::from_name(config.schedule, config.warmup, config.steps, config.min_lr_ratio);
  int64_t start = config.resume ? load_checkpoint(checkpoint_path(config.out_dir), config, ranks, params, opt) : 0;
  if (config.resume && writer) remove_stale_temporaries(checkpoint_path(config.out_dir));
  int64_t last_checkpoint = start;
  std::vector<Batch> val = config.eval_every > 0 || !config.out_dir.empty()
                               ? data.val_batches(config.batch, config.seq, config.eval_batches)
                               : std::vector<Batch>{};
  for (Batch& b : val) b = b.to(config.device);
  std::unique_ptr<parallel::GradSync> sync =
      ranks > 1 ? std::make_unique<parallel::GradSync>(comm, params, !config.recompute) : nullptr;
  if (ranks > 1 && writer)
    std::fprintf(stderr, "data parallel: %d ranks (%s) x batch %lld = global batch %lld\n", ranks, comm.name().c_str(),
                 static_cast<long long>(config.batch), static_cast<long long>(config.batch * ranks));

  TrainResult result;
  result.rank = comm.rank();
  result.ranks = ranks;
  result.comm_bytes_per_step = sync ? sync->bytes_per_step() : 0;
  std::tie(result.trainable_params, result.all_params) = m.trainable_and_all_parameters();
  const std::string out_dir = writer ? config.out_dir : std::string();  // where this rank writes
  for (TrainerCallback* c : callbacks) c->on_train_begin(start);

  Ledger::instance().reset_peaks();
  double train_seconds = 0;
  int64_t train_tokens = 0;  // real tokens (pairs: padding not counted)
  const int64_t end = config.stop_after > 0 ? std::min(config.stop_after, config.steps) : config.steps;
  for (int64_t step = start + 1; step <= end; ++step) {
    auto t0 = Clock::now();
    double lr = schedule.lr(config.effective_lr(), step - 1);
    opt.set_lr(lr);
    int64_t step_tokens = 0;
    std::vector<Batch> micro;  // made on the host, counted there, then moved to the device
    for (int64_t k = 0; k < config.grad_accum; ++k) {
      const Batch& b = micro.emplace_back(data.train_batch(config.batch * ranks, config.seq, config.seed,
                                                           (step - 1) * config.grad_accum + k, rows));
      step_tokens += b.attention_mask.defined() ? int64_t(ops::sum_all(b.attention_mask.to(DType::f32)).item())
                                                : b.ids.numel();
    }
    StepOptions so{.clip = config.clip, .sync = sync.get(), .weights = micro_batch_weights(micro, comm)};
    for (Batch& b : micro) b = b.to(config.device);
    so.check_loss = [&](double value) {
      if (!std::isfinite(value))
        fail("loss is {} at step {}; stopped. {}", value, step,
             last_checkpoint > 0 ? fmt::format("The last good checkpoint ({} after step {}) is kept.",
                                               checkpoint_path(config.out_dir), last_checkpoint)
                                 : std::string("No checkpoint was written."));
    };
    StepOutcome out = train_step(m, opt, micro, so);
    if (ranks > 1) out.loss = parallel::all_reduce_sum(comm, out.loss) / ranks;  // weighted: the global batch's mean
    double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    train_seconds += seconds;
    StepRecord rec{step, out.loss, lr, out.grad_norm, seconds};
    rec.mem_bytes = Ledger::instance().current_total(config.device);
    bool last = step == end;
    // Evaluation draws no random numbers (eval mode: no dropout), so the
    // checkpoint below saves the same state whether or not this step evaluates.
    if ((config.eval_every > 0 && step % config.eval_every == 0) || (last && !val.empty()))
      rec.val_loss = evaluate_shared(m, val, comm);
    // The step's callbacks (its log line) go first, before the checkpoint
    // that covers it: a kill anywhere leaves a log that reaches at least the
    // checkpoint's step, and a resume cuts it back to exactly that step.
    for (TrainerCallback* c : callbacks) c->on_step_end(rec, step_tokens * ranks);
    if (!config.out_dir.empty() && ((config.checkpoint_every > 0 && step % config.checkpoint_every == 0) || last)) {
      const nn::TensorMap optim = opt.state_dict();  // every rank: ZeRO gathers its shards here
      const size_t bytes = checkpoint_bytes(params, optim);
      for (TrainerCallback* c : callbacks) c->on_save(step, bytes);
      if (writer) save_checkpoint(checkpoint_path(out_dir), config, ranks, params, optim, step);
      last_checkpoint = step;
      for (TrainerCallback* c : callbacks) c->on_saved(step);
    }
    train_tokens += step_tokens * ranks;
    result.steps.push_back(rec);
  }
  for (TrainerCallback* c : callbacks) c->on_train_end();
  result.peaks = ledger_peaks(config.device);
  if (ranks > 1)
    for (double bytes : parallel::all_gather(comm, double(result.peaks.by_tag[int(Tag::optimizer)])))
      result.optimizer_peak_by_rank.push_back(size_t(bytes));
  if (!result.steps.empty()) {
    result.final_val_loss = result.steps.back().val_loss;
    result.tokens_per_s = double(train_tokens) / train_seconds;
  }
  if (!out_dir.empty() && end == config.steps) {
    if (m.peft) m.peft->save_pretrained(final_model_dir(out_dir));
    else {
      models::save_pretrained(*m.base, final_model_dir(out_dir));
      save_tokenizer_files(config.tokenizer_dir, final_model_dir(out_dir));
    }
  }
  return result;
}

TrainResult train(TrainedModel& model, TrainingData& data, const TrainConfig& config,
                  const std::vector<TrainerCallback*>& callbacks) {
  parallel::Communicator& comm = parallel::world(config.device);
  return on_every_rank(comm, [&] { return train_loop(model, data, config, callbacks, comm); });
}

TrainResult train(const TrainConfig& config, const models::Tokenizer& tokenizer, TrainedModel* model_out) {
  parallel::Communicator& comm = parallel::world(config.device);
  return on_every_rank(comm, [&] {
    config.validate();
    backend(config.device);  // no such device (CUDA not built, no GPU): an error naming it, before any work
    const bool writer = comm.rank() == 0;  // of the log and the progress line
    std::unique_ptr<TrainingData> data =
        load_training_data(config.data, config.val_fraction, config.seq, config.packing, tokenizer);
    TrainedModel m = build_model(config, tokenizer);
    // The command line's callbacks, in order: the log line of a step is
    // written before the kill hook may fire after it.
    std::vector<std::unique_ptr<TrainerCallback>> owned;
    if (writer && !config.out_dir.empty())
      owned.push_back(std::make_unique<TrainLogCallback>(log_path(config.out_dir), config.resume));
    owned.push_back(std::make_unique<KillHook>(KillHook::from_env(comm.rank())));
    owned.push_back(std::make_unique<Progress>(writer && config.progress && isatty(STDERR_FILENO), config.steps));
    std::vector<TrainerCallback*> callbacks;
    for (auto& c : owned) callbacks.push_back(c.get());
    TrainResult result = train_loop(m, *data, config, callbacks, comm);
    if (model_out) *model_out = std::move(m);
    return result;
  });
}

}  // namespace mp::train
