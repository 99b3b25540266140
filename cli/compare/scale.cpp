// run_scale: the memory story at real scale, beside compare's small quality
// runs. At one real shape (GPT-2 124M by default, random weights) each
// method's training step is planned on the meta device and measured on the
// CPU (two steps, then timed ones), so the table shows the planner's bytes
// beside the Ledger's and the step's speed; then the planner alone gives the
// peak of every method for the GPT-2 and OPT sizes up to 6.7B parameters.
#include <algorithm>
#include <chrono>
#include <vector>
#include <fmt/format.h>

#include "cli/compare/compare.h"
#include "train/memory_plan.h"
#include "train/method_variants.h"

namespace mp::cli {

namespace {

using Clock = std::chrono::steady_clock;

// The method variants (train/method_variants.h) of the scale section.
constexpr const char* kScaleVariants[] = {"full", "lora", "lora+dora", "prefix", "prompt", "lora+bf16", "lora+recomp"};

train::TrainConfig scale_config(const std::string& model, const char* variant, int64_t batch, int64_t seq,
                                uint64_t seed, Device device) {
  train::TrainConfig c;
  c.model = model;
  c.device = device;
  c.batch = batch;
  c.seq = seq;
  c.seed = seed;
  train::method_variant(variant).apply(c);
  return c;
}

}  // namespace

ScaleResult run_scale(const CompareOptions& o, const models::Tokenizer& tok) {
  auto t0 = Clock::now();
  ScaleResult s;
  s.model = o.scale_model;
  s.device = o.train.device;
  for (const char* v : kScaleVariants) {
    if (o.train.progress) std::fprintf(stderr, "at %s shape: planning and measuring %s\n", s.model.c_str(), v);
    train::TrainConfig c = scale_config(s.model, v, s.batch, s.seq, o.train.seed, s.device);
    ScaleRow row{v, train::plan_training_memory(c, tok), train::measure_training_memory(c, tok, s.timed_steps)};
    row.tokens_per_s = double(s.batch * s.seq) / row.measured.step_seconds;
    s.rows.push_back(std::move(row));
  }
  // Planned peaks against model size, at a long-sequence shape.
  for (const char* model : {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "opt-125m", "opt-350m", "opt-1.3b",
                            "opt-2.7b", "opt-6.7b"}) {
    SizePoint p{model, 0, {}};
    for (const char* v : kScaleVariants) {
      train::MemoryPlan plan = train::plan_training_memory(scale_config(model, v, s.size_batch, s.size_seq, o.train.seed, s.device), tok);
      p.all_params = plan.all_params;
      p.peak.push_back(plan.peak_total);
    }
    s.sizes.push_back(std::move(p));
  }
  for (const char* v : kScaleVariants) s.methods.push_back(v);
  s.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  s.done = true;
  return s;
}

std::string format_scale_table(const ScaleResult& s) {
  std::string out = fmt::format(
      "\nat {} shape (random weights), B={} T={}: MiB at the peak of the sum,\nplanned on the meta device / measured on {}\n",
      s.model, s.batch, s.seq, s.device.str());
  const char* row = "{:<12}{:>17}{:>13}{:>15}{:>17}{:>17}{:>9}\n";
  out += fmt::format(fmt::runtime(row), "method", "weights+adapter", "grads", "optimizer", "activ+worksp", "peak",
                     "tok/s");
  auto cell = [](size_t planned, size_t measured) {
    return planned == measured ? fmt::format("{:.1f}", mib(measured))
                               : fmt::format("{:.1f}/{:.1f}", mib(planned), mib(measured));
  };
  for (const ScaleRow& r : s.rows) {
    const TagBytes& p = r.planned.at_peak.by_tag;
    const TagBytes& m = r.measured.at_peak.by_tag;
    auto sum = [](const TagBytes& b, Tag x, Tag y) { return b[size_t(x)] + b[size_t(y)]; };
    out += fmt::format(fmt::runtime(row), r.title, cell(sum(p, Tag::weights, Tag::adapter), sum(m, Tag::weights, Tag::adapter)),
                       cell(p[size_t(Tag::grads)], m[size_t(Tag::grads)]),
                       cell(p[size_t(Tag::optimizer)], m[size_t(Tag::optimizer)]),
                       cell(sum(p, Tag::activations, Tag::workspace), sum(m, Tag::activations, Tag::workspace)),
                       cell(r.planned.peak_total, r.measured.peak_total), fmt::format("{:.0f}", r.tokens_per_s));
  }
  bool all_equal = true;
  for (const ScaleRow& r : s.rows)
    all_equal = all_equal && r.planned.peak_total == r.measured.peak_total &&
                r.planned.at_peak.by_tag == r.measured.at_peak.by_tag && r.planned.tag_peaks == r.measured.tag_peaks;
  out += all_equal ? "Every planned byte equals the measured one (one figure per cell).\n"
                   : "A cell with two figures is planned/measured: they differ.\n";
  out += fmt::format("Planned peak (GiB) at B={} T={}, by model size:\n{:<12}{:>8}", s.size_batch, s.size_seq, "model",
                     "params");
  // Each method's column: its name and a space, at least 10 wide (the table stays within 100 columns).
  std::vector<size_t> width;
  for (const std::string& m : s.methods) width.push_back(std::max<size_t>(10, m.size() + 1));
  for (size_t i = 0; i < s.methods.size(); ++i) out += fmt::format("{:>{}}", s.methods[i], width[i]);
  out += "\n";
  for (const SizePoint& p : s.sizes) {
    out += fmt::format("{:<12}{:>7.2f}B", p.model, double(p.all_params) / 1e9);
    for (size_t i = 0; i < p.peak.size(); ++i) out += fmt::format("{:>{}.2f}", double(p.peak[i]) / (1 << 30), width[i]);
    out += "\n";
  }
  return out;
}

}  // namespace mp::cli
