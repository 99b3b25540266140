#include "cli/compare/compare.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <set>

#include "autograd/variable.h"
#include "engine/error.h"
#include "models/load.h"
#include "train/data/paths.h"

namespace mp::cli {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

const std::vector<std::string>& known_methods() {
  static const std::vector<std::string> m = {"full", "lora", "prefix", "prompt", "qlora"};
  return m;
}

std::string default_pretrain_data() { return train::data_dir() + "/tinyshakespeare/input.txt"; }
std::string default_adapt_data() { return train::data_dir() + "/legal/licenses.txt"; }

int64_t dir_bytes(const std::string& dir) {
  int64_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec))
    if (e.is_regular_file()) n += int64_t(e.file_size());
  return n;
}

void ensure_writable_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir) || access(dir.c_str(), W_OK) != 0)
    fail("output folder {} is not writable{}", dir, ec ? " (" + ec.message() + ")" : std::string());
}

// The adaptation run of one method, as train::TrainConfig.
train::TrainConfig adapt_config(const CompareOptions& o, const std::string& base_dir, const std::string& method,
                         const std::string& data, const std::string& out_dir) {
  train::TrainConfig c = o.train;
  c.model = base_dir;
  c.shape = {};
  c.method = method == "qlora" ? "lora" : method;  // qlora: LoRA on the base quantized to NF4
  if (method == "qlora") c.base_dtype = models::BaseDType::nf4;
  c.data = data;
  c.eval_every = std::max<int64_t>(1, o.train.steps / std::max<int64_t>(1, o.evals));
  c.out_dir = out_dir;
  return c;
}

// Mean seconds of one call of f over `reps` calls, after one untimed call.
template <class F>
double time_mean(int64_t reps, F&& f) {
  f();
  auto t0 = Clock::now();
  for (int64_t i = 0; i < reps; ++i) f();
  return seconds_since(t0) / double(reps);
}

void say(const CompareOptions& o, const std::string& line) {
  if (o.train.progress) std::fprintf(stderr, "%s\n", line.c_str());
}

ServingResult run_serving(const CompareOptions& o, const CompareResult& r, const models::Tokenizer& tok,
                          const std::vector<Tensor>& licence_val, const std::vector<Tensor>& shakespeare_val) {
  ServingResult s;
  const std::string licence_adapter = train::final_model_dir(o.out_dir + "/lora");
  const std::string shakespeare_run = o.out_dir + "/serving-lora-shakespeare";
  say(o, fmt::format("serving: training a second LoRA adapter on {} ({} steps)", o.pretrain_data, o.train.steps));
  auto t0 = Clock::now();
  train::train(adapt_config(o, r.base_dir, "lora", o.pretrain_data, shakespeare_run), tok);
  s.second_adapter_wall_s = seconds_since(t0);

  auto base = std::shared_ptr<models::CausalLM>(models::create_model(r.base_dir, o.train.seed));
  std::shared_ptr<peft::PeftModel> pm = peft::load_peft_model(base, licence_adapter, "licence");
  pm->load_adapter(train::final_model_dir(shakespeare_run), "shakespeare");
  pm->eval();
  train::TrainedModel m{base, pm};
  const char* names[2] = {"licence", "shakespeare"};
  const std::vector<Tensor>* tasks[2] = {&licence_val, &shakespeare_val};
  for (int a = 0; a < 2; ++a) {
    pm->set_adapter(names[a]);
    for (int t = 0; t < 2; ++t) s.loss[a][t] = train::evaluate(m, *tasks[t]);
  }
  pm->disable_adapters();
  for (int t = 0; t < 2; ++t) s.base_loss[t] = train::evaluate(m, *tasks[t]);
  pm->enable_adapters();

  // Switching: set_adapter back and forth, as a server would between requests.
  const int64_t switches = 2000;
  auto ts = Clock::now();
  for (int64_t i = 0; i < switches; ++i) pm->set_adapter(names[i % 2]);
  s.switch_us = seconds_since(ts) / double(switches) * 1e6;

  // Forward latency on one (B, T) batch: bare base, unmerged LoRA, merged LoRA.
  pm->set_adapter("licence");
  ag::NoGrad no_grad;
  const Tensor& ids = licence_val.front();  // (B, T)
  s.forward_reps = 10;
  pm->disable_adapters();
  s.forward_base_s = time_mean(s.forward_reps, [&] { pm->forward(ids); });
  pm->enable_adapters();
  s.forward_unmerged_s = time_mean(s.forward_reps, [&] { pm->forward(ids); });
  auto tm = Clock::now();
  pm->merge_adapter();
  s.merge_s = seconds_since(tm);
  s.forward_merged_s = time_mean(s.forward_reps, [&] { pm->forward(ids); });
  auto tu = Clock::now();
  pm->unmerge_adapter();
  s.unmerge_s = seconds_since(tu);
  s.done = true;
  return s;
}

}  // namespace

train::TrainConfig compare_defaults() {
  train::TrainConfig c;
  c.steps = 200;
  c.batch = 8;
  c.seq = 64;
  return c;
}

void CompareOptions::apply_quick() {
  pretrain_steps = 60;
  train.steps = 30;
  train.batch = 4;
  train.seq = 64;
  train.eval_batches = 4;
  evals = 5;
  scale_model = "none";
}

void CompareOptions::validate() const {
  if (methods.empty()) fail("--methods is empty (expected some of full, lora, prefix, prompt, qlora)");
  std::set<std::string> seen;
  for (const std::string& m : methods) {
    if (std::find(known_methods().begin(), known_methods().end(), m) == known_methods().end())
      fail("unknown method '{}' in --methods (expected full, lora, prefix, prompt or qlora)", m);
    if (!seen.insert(m).second) fail("method '{}' appears twice in --methods", m);
  }
  auto positive = [](int64_t v, const char* name) {
    if (v <= 0) fail("--{} must be positive, got {}", name, v);
  };
  if (base.empty()) positive(pretrain_steps, "pretrain-steps");
  else if (pretrain_steps < 0) fail("--pretrain-steps must be >= 0, got {}", pretrain_steps);
  positive(train.steps, "steps");
  positive(train.batch, "batch");
  positive(train.seq, "seq");
  positive(train.eval_batches, "eval-batches");
  positive(evals, "evals");
  if (train.batch * train.seq > (int64_t(1) << 20)) fail("--batch {} x --seq {} is absurdly large for compare", train.batch, train.seq);
  if (train.steps > 10'000'000 || pretrain_steps > 10'000'000) fail("--steps / --pretrain-steps absurdly large");
  if (base.empty()) shaped_config(train.model, train.shape);  // a bad shape fails before any training
  if (train.lora_r <= 0 || train.lora_r > 4096) fail("--lora-r must be in [1, 4096], got {}", train.lora_r);
  if (train.num_virtual_tokens <= 0 || train.num_virtual_tokens > 1024)
    fail("--virtual-tokens must be in [1, 1024], got {}", train.num_virtual_tokens);
  if (!(train.lr >= 0) || !std::isfinite(train.lr)) fail("--lr must be a finite number >= 0, got {}", train.lr);
  if (!(pretrain_lr > 0) || !std::isfinite(pretrain_lr)) fail("--pretrain-lr must be positive, got {}", pretrain_lr);
  if (serving && std::find(methods.begin(), methods.end(), "lora") == methods.end())
    fail("--serving needs lora among --methods");
  if (!base.empty() && !fs::is_directory(base)) fail("--base {}: no such model folder", base);
  if (scale_model != "none") models::config_of(scale_model);  // an unknown shape fails before any training
}

CompareResult run_compare(const CompareOptions& options, const models::Tokenizer& tok) {
  auto t_all = Clock::now();
  CompareOptions o = options;
  if (o.pretrain_data.empty()) o.pretrain_data = default_pretrain_data();
  if (o.train.data.empty()) o.train.data = default_adapt_data();
  o.validate();
  ensure_writable_dir(o.out_dir);

  CompareResult r;
  // Read both corpora first: a bad file fails before any training.
  train::TokenDataset shakespeare(train::load_token_ids(o.pretrain_data, tok), 0.1, o.pretrain_data);
  train::TokenDataset licence(train::load_token_ids(o.train.data, tok), 0.1, o.train.data);
  std::vector<Tensor> shakespeare_val = shakespeare.val_batches(o.train.batch, o.train.seq, o.train.eval_batches);
  std::vector<Tensor> licence_val = licence.val_batches(o.train.batch, o.train.seq, o.train.eval_batches);

  // (1) The base: given, or pretrained here.
  if (!o.base.empty()) {
    r.base_dir = o.base;
  } else {
    auto t0 = Clock::now();
    train::TrainConfig pc = o.train;
    pc.method = "full";
    pc.data = o.pretrain_data;
    pc.steps = o.pretrain_steps;
    pc.lr = o.pretrain_lr;
    pc.warmup = o.pretrain_steps / 10;
    pc.out_dir = o.out_dir + "/pretrain";
    say(o, fmt::format("pretraining {} on {} ({} steps of {}x{} tokens)", o.train.model, o.pretrain_data, o.pretrain_steps,
                       o.train.batch, o.train.seq));
    r.pretrain = train::train(pc, tok);
    r.pretrain_wall_s = seconds_since(t0);
    r.pretrained = true;
    r.base_dir = train::final_model_dir(pc.out_dir);
  }

  // Before adapting: the base on both held-out sets.
  double licence_before;
  {
    train::TrainedModel base{std::shared_ptr<models::CausalLM>(models::create_model(r.base_dir, o.train.seed)), nullptr};
    base.module().eval();
    r.base_config = base.base->config();
    r.base_params = base.base->num_parameters();
    r.shakespeare_loss_before = train::evaluate(base, shakespeare_val);
    licence_before = train::evaluate(base, licence_val);
  }

  // (2) Each method, one at a time (the previous model freed, so the ledger
  // peaks are this method's alone).
  for (const std::string& method : o.methods) {
    say(o, fmt::format("adapting with {} on {} ({} steps of {}x{} tokens)", method, o.train.data, o.train.steps, o.train.batch,
                       o.train.seq));
    auto t0 = Clock::now();
    MethodResult mr;
    mr.method = method;
    mr.licence_loss_before = licence_before;
    std::string dir = o.out_dir + "/" + method;
    train::TrainConfig tc = adapt_config(o, r.base_dir, method, o.train.data, dir);
    {  // the method's starting point (prompt and prefix tuning change the output before any step)
      train::TrainedModel init = build_model(tc, tok);
      mr.licence_loss_init = train::evaluate(init, licence_val);
    }
    {
      train::TrainedModel m;
      mr.train = train::train(tc, tok, &m);
      mr.shakespeare_loss_after = train::evaluate(m, shakespeare_val);
    }
    mr.wall_s = seconds_since(t0);
    mr.disk_bytes = dir_bytes(train::final_model_dir(dir));
    mr.tokens = int64_t(mr.train.steps.size()) * o.train.batch * o.train.seq;
    r.methods.push_back(std::move(mr));
  }

  if (o.serving) r.serving = run_serving(o, r, tok, licence_val, shakespeare_val);
  if (o.scale_model != "none") r.scale = run_scale(o, tok);
  r.options = o;
  r.wall_s = seconds_since(t_all);
  return r;
}

}  // namespace mp::cli
