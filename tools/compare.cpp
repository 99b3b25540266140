#include "tools/compare.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <set>

#include "autograd/variable.h"
#include "engine/error.h"
#include "models/load.h"
#include "nn/atomic_file.h"
#include "tools/paths.h"

namespace mp::tools {

namespace fs = std::filesystem;
using peft::with_commas;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

const std::vector<std::string>& known_methods() {
  static const std::vector<std::string> m = {"full", "lora", "prefix", "prompt"};
  return m;
}

std::string default_pretrain_data() { return cli::data_dir() + "/tinyshakespeare/input.txt"; }
std::string default_adapt_data() { return cli::data_dir() + "/legal/licenses.txt"; }

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

// The adaptation run of one method, as TrainConfig.
TrainConfig adapt_config(const CompareOptions& o, const std::string& base_dir, const std::string& method,
                         const std::string& data, const std::string& out_dir) {
  TrainConfig c;
  c.model = base_dir;
  c.method = method;
  c.data = data;
  c.batch = o.batch;
  c.seq = o.seq;
  c.steps = o.steps;
  c.lr = o.lr;
  c.lora_r = o.lora_r;
  c.lora_targets = o.lora_targets;
  c.num_virtual_tokens = o.num_virtual_tokens;
  c.eval_every = std::max<int64_t>(1, o.steps / std::max<int64_t>(1, o.evals));
  c.eval_batches = o.eval_batches;
  c.out_dir = out_dir;
  c.seed = o.seed;
  c.recompute = o.recompute;
  c.progress = o.progress;
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
  if (o.progress) std::fprintf(stderr, "%s\n", line.c_str());
}

ServingResult run_serving(const CompareOptions& o, const CompareResult& r, const models::Tokenizer& tok,
                          const std::vector<Tensor>& licence_val, const std::vector<Tensor>& shakespeare_val) {
  ServingResult s;
  const std::string licence_adapter = final_model_dir(o.out_dir + "/lora");
  const std::string shakespeare_run = o.out_dir + "/serving-lora-shakespeare";
  say(o, fmt::format("serving: training a second LoRA adapter on {} ({} steps)", o.pretrain_data, o.steps));
  auto t0 = Clock::now();
  train(adapt_config(o, r.base_dir, "lora", o.pretrain_data, shakespeare_run), tok);
  s.second_adapter_wall_s = seconds_since(t0);

  auto base = std::shared_ptr<models::CausalLM>(models::create_model(r.base_dir, o.seed));
  std::shared_ptr<peft::PeftModel> pm = peft::load_peft_model(base, licence_adapter, "licence");
  pm->load_adapter(final_model_dir(shakespeare_run), "shakespeare");
  pm->eval();
  TrainedModel m{base, pm};
  const char* names[2] = {"licence", "shakespeare"};
  const std::vector<Tensor>* tasks[2] = {&licence_val, &shakespeare_val};
  for (int a = 0; a < 2; ++a) {
    pm->set_adapter(names[a]);
    for (int t = 0; t < 2; ++t) s.loss[a][t] = evaluate(m, *tasks[t]);
  }
  pm->disable_adapters();
  for (int t = 0; t < 2; ++t) s.base_loss[t] = evaluate(m, *tasks[t]);
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

std::string human_bytes(double b) {
  if (b >= 1 << 30) return fmt::format("{:.1f} GiB", b / (1 << 30));
  if (b >= 1 << 20) return fmt::format("{:.1f} MiB", b / (1 << 20));
  if (b >= 1 << 10) return fmt::format("{:.1f} KiB", b / (1 << 10));
  return fmt::format("{:.0f} B", b);
}

double mib(size_t b) { return double(b) / (1 << 20); }

// MiB for the table: one decimal, three for small non-zero amounts (an adapter's grads).
std::string mib_cell(size_t b) { return b > 0 && b < (size_t(1) << 20) ? fmt::format("{:.3f}", mib(b)) : fmt::format("{:.1f}", mib(b)); }

size_t tag_peak(const TrainResult& t, Tag tag) { return t.peaks.by_tag[int(tag)]; }

}  // namespace

void CompareOptions::apply_quick() {
  pretrain_steps = 60;
  steps = 30;
  batch = 4;
  seq = 64;
  eval_batches = 4;
  evals = 5;
}

void CompareOptions::validate() const {
  if (methods.empty()) fail("--methods is empty (expected some of full, lora, prefix, prompt)");
  std::set<std::string> seen;
  for (const std::string& m : methods) {
    if (std::find(known_methods().begin(), known_methods().end(), m) == known_methods().end())
      fail("unknown method '{}' in --methods (expected full, lora, prefix or prompt)", m);
    if (!seen.insert(m).second) fail("method '{}' appears twice in --methods", m);
  }
  auto positive = [](int64_t v, const char* name) {
    if (v <= 0) fail("--{} must be positive, got {}", name, v);
  };
  if (base.empty()) positive(pretrain_steps, "pretrain-steps");
  else if (pretrain_steps < 0) fail("--pretrain-steps must be >= 0, got {}", pretrain_steps);
  positive(steps, "steps");
  positive(batch, "batch");
  positive(seq, "seq");
  positive(eval_batches, "eval-batches");
  positive(evals, "evals");
  if (batch * seq > (int64_t(1) << 20)) fail("--batch {} x --seq {} is absurdly large for compare", batch, seq);
  if (steps > 10'000'000 || pretrain_steps > 10'000'000) fail("--steps / --pretrain-steps absurdly large");
  if (layers < 0 || width < 0 || heads < 0) fail("--layers, --width and --heads must be >= 0");
  if (layers > 64 || width > 4096 || heads > 64) fail("--layers/--width/--heads absurdly large for compare");
  if (lora_r <= 0 || lora_r > 4096) fail("--lora-r must be in [1, 4096], got {}", lora_r);
  if (num_virtual_tokens <= 0 || num_virtual_tokens > 1024)
    fail("--virtual-tokens must be in [1, 1024], got {}", num_virtual_tokens);
  if (!(lr >= 0) || !std::isfinite(lr)) fail("--lr must be a finite number >= 0, got {}", lr);
  if (!(pretrain_lr > 0) || !std::isfinite(pretrain_lr)) fail("--pretrain-lr must be positive, got {}", pretrain_lr);
  if (serving && std::find(methods.begin(), methods.end(), "lora") == methods.end())
    fail("--serving needs lora among --methods");
  if (!base.empty() && !fs::is_directory(base)) fail("--base {}: no such model folder", base);
}

CompareResult run_compare(const CompareOptions& options, const models::Tokenizer& tok) {
  auto t_all = Clock::now();
  CompareOptions o = options;
  if (o.pretrain_data.empty()) o.pretrain_data = default_pretrain_data();
  if (o.adapt_data.empty()) o.adapt_data = default_adapt_data();
  o.validate();
  ensure_writable_dir(o.out_dir);

  CompareResult r;
  // Read both corpora first: a bad file fails before any training.
  TokenDataset shakespeare(load_token_ids(o.pretrain_data, tok), 0.1, o.pretrain_data);
  TokenDataset licence(load_token_ids(o.adapt_data, tok), 0.1, o.adapt_data);
  std::vector<Tensor> shakespeare_val = shakespeare.val_batches(o.batch, o.seq, o.eval_batches);
  std::vector<Tensor> licence_val = licence.val_batches(o.batch, o.seq, o.eval_batches);

  // (1) The base: given, or pretrained here.
  if (!o.base.empty()) {
    r.base_dir = o.base;
  } else {
    auto t0 = Clock::now();
    TrainConfig pc;
    pc.model = o.model;
    if (o.layers || o.width || o.heads) {
      models::ModelConfig mc = models::builtin_config(o.model);
      if (o.layers) mc.num_layers = o.layers;
      if (o.heads) mc.num_heads = o.heads;
      if (o.width) {
        mc.hidden_size = o.width;
        mc.ffn_dim = 4 * o.width;
      }
      if (mc.hidden_size % mc.num_heads != 0)
        fail("--width {} is not divisible by --heads {}", mc.hidden_size, mc.num_heads);
      pc.model = o.out_dir + "/init";
      models::save_pretrained(*models::make_model(mc, o.seed), pc.model);
    }
    pc.method = "full";
    pc.data = o.pretrain_data;
    pc.batch = o.batch;
    pc.seq = o.seq;
    pc.steps = o.pretrain_steps;
    pc.lr = o.pretrain_lr;
    pc.warmup = o.pretrain_steps / 10;
    pc.eval_batches = o.eval_batches;
    pc.out_dir = o.out_dir + "/pretrain";
    pc.seed = o.seed;
    pc.recompute = o.recompute;
    pc.progress = o.progress;
    say(o, fmt::format("pretraining {} on {} ({} steps of {}x{} tokens)", o.model, o.pretrain_data, o.pretrain_steps,
                       o.batch, o.seq));
    r.pretrain = train(pc, tok);
    r.pretrain_wall_s = seconds_since(t0);
    r.pretrained = true;
    r.base_dir = final_model_dir(pc.out_dir);
  }

  // Before adapting: the base on both held-out sets.
  double licence_before;
  {
    TrainedModel base{std::shared_ptr<models::CausalLM>(models::create_model(r.base_dir, o.seed)), nullptr};
    base.module().eval();
    r.base_config = base.base->config();
    r.base_params = base.base->num_parameters();
    r.shakespeare_loss_before = evaluate(base, shakespeare_val);
    licence_before = evaluate(base, licence_val);
  }

  // (2) Each method, one at a time (the previous model freed, so the ledger
  // peaks are this method's alone).
  for (const std::string& method : o.methods) {
    say(o, fmt::format("adapting with {} on {} ({} steps of {}x{} tokens)", method, o.adapt_data, o.steps, o.batch,
                       o.seq));
    auto t0 = Clock::now();
    MethodResult mr;
    mr.method = method;
    mr.licence_loss_before = licence_before;
    std::string dir = o.out_dir + "/" + method;
    TrainConfig tc = adapt_config(o, r.base_dir, method, o.adapt_data, dir);
    {  // the method's starting point (prompt and prefix tuning change the output before any step)
      TrainedModel init = build_model(tc, tok);
      mr.licence_loss_init = evaluate(init, licence_val);
    }
    {
      TrainedModel m;
      mr.train = train(tc, tok, &m);
      mr.shakespeare_loss_after = evaluate(m, shakespeare_val);
    }
    mr.wall_s = seconds_since(t0);
    mr.disk_bytes = dir_bytes(final_model_dir(dir));
    mr.tokens = int64_t(mr.train.steps.size()) * o.batch * o.seq;
    r.methods.push_back(std::move(mr));
  }

  if (o.serving) r.serving = run_serving(o, r, tok, licence_val, shakespeare_val);
  r.options = o;
  r.wall_s = seconds_since(t_all);
  return r;
}

std::string format_table(const CompareResult& r) {
  const CompareOptions& o = r.options;
  std::string s;
  const models::ModelConfig& c = r.base_config;
  s += fmt::format("base: {}\n", r.base_dir);
  s += fmt::format("  {} layers, width {}, {} heads, {} parameters", c.num_layers, c.hidden_size, c.num_heads,
                   with_commas(r.base_params));
  if (r.pretrained)
    s += fmt::format("; pretrained {} steps in {:.1f} s, final loss {:.3f}", r.pretrain.steps.size(),
                     r.pretrain_wall_s, r.pretrain.steps.empty() ? 0.0 : r.pretrain.steps.back().loss);
  s += "\n";
  s += fmt::format("budget: {} steps x batch {} x seq {} = {} tokens per method\n", o.steps, o.batch, o.seq,
                   with_commas(o.steps * o.batch * o.seq));
  s += fmt::format("before adapting: held-out licence loss {:.3f}, held-out Shakespeare ppl {:.1f}\n\n",
                   r.methods.empty() ? -1.0 : r.methods.front().licence_loss_before,
                   std::exp(r.shakespeare_loss_before));
  const char* row = "{:<7}{:>10}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>9}{:>9}{:>9}{:>7}\n";
  s += fmt::format(fmt::runtime(row), "method", "trainable", "weights", "grads", "optim", "activ", "total", "tok/s",
                   "licence", "Shakesp.", "on disk", "wall");
  s += fmt::format(fmt::runtime(row), "", "params", "MiB", "MiB", "MiB", "MiB", "MiB", "", "loss", "ppl", "", "s");
  for (const MethodResult& m : r.methods) {
    const TrainResult& t = m.train;
    s += fmt::format(fmt::runtime(row), m.method, with_commas(t.trainable_params),
                     mib_cell(tag_peak(t, Tag::weights) + tag_peak(t, Tag::adapter)),
                     mib_cell(tag_peak(t, Tag::grads)),
                     mib_cell(tag_peak(t, Tag::optimizer)),
                     mib_cell(tag_peak(t, Tag::activations) + tag_peak(t, Tag::workspace)),
                     mib_cell(t.peaks.total), fmt::format("{:.0f}", t.tokens_per_s),
                     fmt::format("{:.3f}", t.final_val_loss), fmt::format("{:.1f}", std::exp(m.shakespeare_loss_after)),
                     human_bytes(double(m.disk_bytes)), fmt::format("{:.1f}", m.wall_s));
  }
  s += "\nMemory: ledger peaks per category (weights include adapter tensors, activ includes workspace;\n"
       "total is the peak of the sum). Licence loss: held-out, after adapting. Shakesp. ppl: held-out,\n"
       "with the adapted model (forgetting). On disk: the files in <out>/<method>/final.\n";
  if (r.serving.done) {
    const ServingResult& v = r.serving;
    s += fmt::format(
        "\nserving two LoRA adapters on one base: set_adapter {:.2f} us\n"
        "  held-out loss (licence/Shakespeare): licence adapter {:.3f}/{:.3f},\n"
        "  Shakespeare adapter {:.3f}/{:.3f}, adapters off {:.3f}/{:.3f}\n"
        "  forward ({}x{}): base {:.2f} ms, LoRA unmerged {:.2f} ms, merged {:.2f} ms\n"
        "  merge {:.2f} ms, unmerge {:.2f} ms\n",
        v.switch_us, v.loss[0][0], v.loss[0][1], v.loss[1][0], v.loss[1][1], v.base_loss[0], v.base_loss[1], o.batch,
        o.seq, v.forward_base_s * 1e3, v.forward_unmerged_s * 1e3, v.forward_merged_s * 1e3, v.merge_s * 1e3,
        v.unmerge_s * 1e3);
  }
  s += fmt::format("total wall time {:.1f} s\n", r.wall_s);
  return s;
}

static nlohmann::json peaks_json(const MemoryPeaks& p) {
  nlohmann::json j;
  for (int t = 0; t < kTags; ++t) j[std::string(tag_name(Tag(t)))] = p.by_tag[t];
  j["total"] = p.total;
  return j;
}

static nlohmann::json steps_json(const TrainResult& t) {
  nlohmann::json a = nlohmann::json::array();
  for (const StepRecord& s : t.steps) {
    nlohmann::json j = {{"step", s.step}, {"loss", s.loss}, {"lr", s.lr}, {"seconds", s.seconds}};
    if (s.val_loss >= 0) j["val_loss"] = s.val_loss;
    a.push_back(j);
  }
  return a;
}

void write_results_json(const CompareResult& r, const std::string& path) {
  const CompareOptions& o = r.options;
  nlohmann::json j;
  j["options"] = {{"out", o.out_dir}, {"base", o.base}, {"model", o.model}, {"pretrain_data", o.pretrain_data},
                  {"adapt_data", o.adapt_data}, {"pretrain_steps", o.pretrain_steps}, {"steps", o.steps},
                  {"batch", o.batch}, {"seq", o.seq}, {"lr", o.lr}, {"pretrain_lr", o.pretrain_lr},
                  {"methods", o.methods}, {"lora_r", o.lora_r}, {"lora_targets", o.lora_targets},
                  {"virtual_tokens", o.num_virtual_tokens}, {"eval_batches", o.eval_batches}, {"seed", o.seed}};
  const models::ModelConfig& c = r.base_config;
  j["base"] = {{"dir", r.base_dir}, {"layers", c.num_layers}, {"width", c.hidden_size}, {"heads", c.num_heads},
               {"vocab", c.vocab_size}, {"params", r.base_params}, {"pretrained", r.pretrained}};
  if (r.pretrained)
    j["pretrain"] = {{"wall_s", r.pretrain_wall_s}, {"tokens_per_s", r.pretrain.tokens_per_s},
                     {"final_val_loss", r.pretrain.final_val_loss}, {"steps", steps_json(r.pretrain)}};
  j["shakespeare_loss_before"] = r.shakespeare_loss_before;
  j["shakespeare_ppl_before"] = std::exp(r.shakespeare_loss_before);
  j["methods"] = nlohmann::json::array();
  for (const MethodResult& m : r.methods) {
    const TrainResult& t = m.train;
    j["methods"].push_back({{"method", m.method},
                            {"trainable_params", t.trainable_params},
                            {"all_params", t.all_params},
                            {"peak_bytes", peaks_json(t.peaks)},
                            {"tokens_per_s", t.tokens_per_s},
                            {"mean_step_s", t.steps.empty() ? 0.0 : double(m.tokens) / t.tokens_per_s / double(t.steps.size())},
                            {"tokens", m.tokens},
                            {"licence_loss_before", m.licence_loss_before},
                            {"licence_loss_init", m.licence_loss_init},
                            {"licence_loss_after", t.final_val_loss},
                            {"shakespeare_loss_after", m.shakespeare_loss_after},
                            {"shakespeare_ppl_after", std::exp(m.shakespeare_loss_after)},
                            {"disk_bytes", m.disk_bytes},
                            {"wall_s", m.wall_s},
                            {"steps", steps_json(t)}});
  }
  if (r.serving.done) {
    const ServingResult& v = r.serving;
    j["serving"] = {{"switch_us", v.switch_us},
                    {"loss", {{"licence_adapter", {v.loss[0][0], v.loss[0][1]}},
                              {"shakespeare_adapter", {v.loss[1][0], v.loss[1][1]}},
                              {"adapters_off", {v.base_loss[0], v.base_loss[1]}}}},
                    {"tasks", {"licence", "shakespeare"}},
                    {"forward_base_s", v.forward_base_s},
                    {"forward_unmerged_s", v.forward_unmerged_s},
                    {"forward_merged_s", v.forward_merged_s},
                    {"forward_reps", v.forward_reps},
                    {"merge_s", v.merge_s},
                    {"unmerge_s", v.unmerge_s},
                    {"second_adapter_wall_s", v.second_adapter_wall_s}};
  }
  j["wall_s"] = r.wall_s;
  nn::write_file_atomically(path, j.dump(1) + "\n");
}

std::string write_plots(const CompareResult& r, const std::string& out_dir) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    return "gnuplot not found: no plots (results.json has the numbers)";
  std::string terminal = "png";
  if (FILE* p = popen("gnuplot -e 'set terminal' 2>&1", "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, p))
      if (std::string(buf).find("pngcairo") != std::string::npos) terminal = "pngcairo";
    pclose(p);
  }
  std::string dir = out_dir + "/plots";
  std::error_code ec;
  fs::create_directories(dir, ec);
  // Loss curves: x = training tokens; the training loss smoothed (EMA 0.9,
  // bias-corrected) and the held-out evaluations.
  std::string plot_loss, plot_mem;
  const int64_t tokens_per_step = r.options.batch * r.options.seq;
  int i = 0;
  for (const MethodResult& m : r.methods) {
    std::string data = "# tokens step loss ema val_loss\n";
    double ema = 0, w = 0;
    for (const StepRecord& s : m.train.steps) {
      ema = 0.9 * ema + 0.1 * s.loss;
      w = 0.9 * w + 0.1;
      data += fmt::format("{} {} {:.6f} {:.6f} {}\n", s.step * tokens_per_step, s.step, s.loss, ema / w,
                          s.val_loss >= 0 ? fmt::format("{:.6f}", s.val_loss) : std::string("?"));
    }
    nn::write_file_atomically(dir + "/loss_" + m.method + ".dat", data);
    ++i;
    plot_loss += fmt::format("{}'loss_{}.dat' using 1:4 with lines lw 2 lc {} title '{} (train, EMA)', "
                             "'' using 1:5 with linespoints pt 7 lc {} dt 2 title '{} (held-out)'",
                             plot_loss.empty() ? "" : ", ", m.method, i, m.method, i, m.method);
  }
  std::string mem = "# method weights grads optimizer activations workspace (MiB)\n";
  for (const MethodResult& m : r.methods) {
    const TrainResult& t = m.train;
    mem += fmt::format("{} {:.3f} {:.3f} {:.3f} {:.3f} {:.3f}\n", m.method,
                       mib(tag_peak(t, Tag::weights) + tag_peak(t, Tag::adapter)), mib(tag_peak(t, Tag::grads)),
                       mib(tag_peak(t, Tag::optimizer)), mib(tag_peak(t, Tag::activations)),
                       mib(tag_peak(t, Tag::workspace)));
  }
  nn::write_file_atomically(dir + "/memory.dat", mem);
  std::string script = fmt::format(
      "set terminal {0} size 1000,560\n"
      "set datafile missing '?'\n"
      "set grid\n"
      "set output 'loss.png'\n"
      "set title 'Adapting to the licence corpus: loss vs training tokens ({1} steps x {2}x{3})'\n"
      "set xlabel 'training tokens'\nset ylabel 'loss (nats/token)'\nset key outside right top\n"
      "plot {4}\n"
      "set output 'memory.png'\n"
      "set title 'Peak memory by category (per-tag ledger peaks, stacked)'\n"
      "set xlabel 'method'\nset ylabel 'MiB'\nunset grid\nset grid ytics\n"
      "set style data histograms\nset style histogram rowstacked\nset style fill solid 0.85 border -1\n"
      "set boxwidth 0.6\nset key outside right top\nset yrange [0:*]\n"
      "plot 'memory.dat' using 2:xtic(1) title 'weights', '' using 3 title 'grads', '' using 4 title 'optimizer', "
      "'' using 5 title 'activations', '' using 6 title 'workspace'\n",
      terminal, r.options.steps, r.options.batch, r.options.seq, plot_loss);
  nn::write_file_atomically(dir + "/plots.gp", script);
  std::string cmd = fmt::format("cd '{}' && gnuplot plots.gp > gnuplot.log 2>&1", dir);
  if (std::system(cmd.c_str()) != 0) return fmt::format("gnuplot failed (see {}/gnuplot.log): no plots", dir);
  return fmt::format("wrote {0}/loss.png and {0}/memory.png", dir);
}

}  // namespace mp::tools
