// `minipeft compare` through the library, at settings smaller than --quick:
// the table's invariants (parameter counts, exact grad and optimizer bytes,
// the adaptation lowers the held-out licence loss, bytes on disk), the
// serving measurements, results.json and the plots, and bad input as mp::Error.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>

#include "engine/error.h"
#include "cli/compare/compare.h"
#include "tests/support/temp_dir.h"
#include "train/data/paths.h"

namespace mp::test {
namespace {

namespace fs = std::filesystem;

const models::Tokenizer& tokenizer() {
  static models::Tokenizer tok = models::Tokenizer::from_dir(train::default_tokenizer_dir());
  return tok;
}

cli::CompareOptions tiny_options(const std::string& out) {
  cli::CompareOptions o;
  o.out_dir = out;
  o.pretrain_steps = 10;
  o.train.steps = 6;
  o.train.batch = 2;
  o.train.seq = 32;
  o.train.lr = 2e-2;  // one LR for all methods, large enough to move in 6 steps
  o.train.eval_batches = 2;
  o.evals = 1;
  o.train.num_virtual_tokens = 4;
  o.scale_model = "none";
  o.train.progress = false;
  return o;
}

size_t peak(const cli::MethodResult& m, Tag t) { return m.train.peaks.by_tag[int(t)]; }

// write_plots drew both plots under out/plots (where gnuplot is installed).
void check_plots_drawn(const std::string& note, const std::string& out) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return;
  CHECK(note.rfind("wrote", 0) == 0);
  CHECK(fs::file_size(out + "/plots/loss.png") > 1000);
  CHECK(fs::file_size(out + "/plots/memory.png") > 1000);
}

TEST_CASE("compare: the table's invariants at a tiny budget") {
  const TempDir tmp("compare_main");
  const std::string out = tmp.str();
  cli::CompareOptions o = tiny_options(out);
  o.serving = true;
  o.scale_model = "gpt2-tiny";  // the scale section at a shape that runs in a second
  cli::CompareResult r = cli::run_compare(o, tokenizer());

  // The scale section: each method planned on meta equals its measured step, to the byte.
  REQUIRE(r.scale.done);
  REQUIRE(r.scale.rows.size() == 7);
  for (const cli::ScaleRow& row : r.scale.rows) {
    CAPTURE(row.title);
    CHECK(row.planned.peak_total == row.measured.peak_total);
    CHECK(row.planned.at_peak.by_tag == row.measured.at_peak.by_tag);
    CHECK(row.planned.tag_peaks == row.measured.tag_peaks);
    CHECK(row.tokens_per_s > 0);
  }
  REQUIRE(r.scale.sizes.size() == 9);
  for (const cli::SizePoint& p : r.scale.sizes) {
    CAPTURE(p.model);
    REQUIRE(p.peak.size() == r.scale.methods.size());
    CHECK(p.peak[1] < p.peak[0]);  // LoRA below full fine-tuning at every size
  }
  CHECK(cli::format_table(r).find("Every planned byte equals the measured one") != std::string::npos);

  REQUIRE(r.methods.size() == 4);
  std::map<std::string, const cli::MethodResult*> by;
  for (const auto& m : r.methods) by[m.method] = &m;
  const cli::MethodResult& full = *by.at("full");
  CHECK(r.pretrained);
  CHECK(r.pretrain.steps.size() == 10);
  CHECK(full.train.trainable_params == r.base_params);
  CHECK(full.train.all_params == r.base_params);

  for (const auto& m : r.methods) {
    CAPTURE(m.method);
    const int64_t trainable = m.train.trainable_params;
    CHECK(trainable > 0);
    if (m.method != "full") CHECK(trainable < full.train.trainable_params);
    // AdamW keeps m and v in f32 for exactly the trainable parameters; grads
    // exist only for them. Frozen weights have neither.
    CHECK(peak(m, Tag::optimizer) == size_t(8 * trainable));
    CHECK(peak(m, Tag::grads) == size_t(4 * trainable));
    CHECK(peak(m, Tag::weights) + peak(m, Tag::adapter) >= size_t(4 * r.base_params));
    CHECK(m.train.peaks.total >= peak(m, Tag::weights));
    CHECK(m.train.steps.size() == 6);
    CHECK(m.tokens == 6 * 2 * 32);
    CHECK(m.train.tokens_per_s > 0);
    CHECK(m.wall_s > 0);
    // The adaptation lowers the held-out licence loss from the method's
    // starting point (same batches). Full fine-tuning and LoRA (B = 0) start
    // at the base; a fresh prompt or prefix already changes the output.
    CHECK(m.train.final_val_loss < m.licence_loss_init);
    if (m.method == "full" || m.method == "lora") {
      CHECK(m.licence_loss_init == doctest::Approx(m.licence_loss_before).epsilon(1e-6));
      CHECK(m.train.final_val_loss < m.licence_loss_before);
    }
    CHECK(std::isfinite(m.shakespeare_loss_after));
    CHECK(m.disk_bytes > 0);
    if (m.method != "full") CHECK(m.disk_bytes < full.disk_bytes);
  }
  // Full fine-tuning saves the whole model: at least its f32 weights.
  CHECK(full.disk_bytes >= 4 * (r.base_params));

  // Serving: two LoRA adapters on one base; with adapters off the model is the base.
  REQUIRE(r.serving.done);
  CHECK(r.serving.base_loss[1] == doctest::Approx(r.shakespeare_loss_before).epsilon(1e-6));
  CHECK(r.serving.base_loss[0] == doctest::Approx(by.at("lora")->licence_loss_before).epsilon(1e-6));
  CHECK(r.serving.loss[0][0] == doctest::Approx(by.at("lora")->train.final_val_loss).epsilon(1e-5));
  CHECK(r.serving.loss[0][1] == doctest::Approx(by.at("lora")->shakespeare_loss_after).epsilon(1e-5));
  CHECK(r.serving.switch_us > 0);
  CHECK(r.serving.forward_base_s > 0);
  CHECK(r.serving.forward_unmerged_s > 0);
  CHECK(r.serving.forward_merged_s > 0);

  // The table: one row per method, readable at 100 columns.
  std::string table = cli::format_table(r);
  std::istringstream lines(table);
  std::string line;
  int rows = 0;
  bool quality_section = true;  // the scale section's rows come after "at <model> shape"
  while (std::getline(lines, line)) {
    CHECK(line.size() <= 100);
    quality_section = quality_section && line.rfind("at gpt2-tiny shape", 0) != 0;
    for (const auto& m : r.methods)
      if (quality_section && line.rfind(m.method + " ", 0) == 0) ++rows;
  }
  CHECK(rows == 4);

  cli::write_results_json(r, out + "/results.json");
  std::ifstream in(out + "/results.json");
  nlohmann::json j = nlohmann::json::parse(in);
  CHECK(j["methods"].size() == 4);
  CHECK(j["methods"][0]["steps"].size() == 6);
  CHECK(j["serving"]["switch_us"].get<double>() > 0);

  check_plots_drawn(cli::write_plots(r, out), out);
}

TEST_CASE("compare: the plots run gnuplot without a shell, whatever the --out path") {
  const TempDir tmp("compare_shell");
  const std::string base = tmp.str();
  const std::string injected = base + "/injected";
  const std::string out = base + "/q'x; touch " + injected + "; echo '";
  // A result small enough to draw in no time: two methods, three steps each.
  cli::CompareResult r;
  r.options = tiny_options(out);
  for (const char* method : {"full", "lora"}) {
    cli::MethodResult m;
    m.method = method;
    m.train.steps = {{1, 3.0, 1e-3, 1.0, 0.1}, {2, 2.5, 1e-3, 1.0, 0.1, 2.7}, {3, 2.25, 1e-3, 1.0, 0.1}};
    m.train.peaks.by_tag[int(Tag::weights)] = size_t(3) << 20;
    r.methods.push_back(m);
  }
  const std::string note = cli::write_plots(r, out);
  CHECK_FALSE(fs::exists(injected));
  check_plots_drawn(note, out);
}

TEST_CASE("compare: --base and a subset of methods") {
  const TempDir tmp("compare_base");
  const std::string out = tmp.str();
  cli::CompareOptions o = tiny_options(out);
  o.pretrain_steps = 2;
  o.methods = {"lora"};
  cli::CompareResult first = cli::run_compare(o, tokenizer());
  cli::CompareOptions again = tiny_options(out + "/again");
  again.base = first.base_dir;
  again.methods = {"prompt", "lora"};
  cli::CompareResult r = cli::run_compare(again, tokenizer());
  CHECK_FALSE(r.pretrained);
  REQUIRE(r.methods.size() == 2);
  CHECK(r.methods[0].method == "prompt");
  CHECK(r.shakespeare_loss_before == doctest::Approx(first.shakespeare_loss_before).epsilon(1e-9));
}

TEST_CASE("compare: bad input is an mp::Error") {
  const TempDir tmp("compare_bad");
  const std::string out = tmp.str();
  auto fails = [&](cli::CompareOptions o) { CHECK_THROWS_AS(cli::run_compare(o, tokenizer()), mp::Error); };
  cli::CompareOptions o = tiny_options(out + "/run");
  {
    auto b = o;
    b.methods = {"lora", "adapterfusion"};
    fails(b);
  }
  {
    auto b = o;
    b.methods = {"lora", "lora"};
    fails(b);
  }
  {
    auto b = o;
    b.train.steps = -3;
    fails(b);
  }
  {
    auto b = o;
    b.train.batch = 1 << 20;
    fails(b);
  }
  {
    auto b = o;
    b.train.data = out + "/missing.txt";
    fails(b);
  }
  {
    std::ofstream(out + "/empty.txt");
    auto b = o;
    b.train.data = out + "/empty.txt";
    fails(b);
  }
  {
    std::ofstream(out + "/latin1.txt", std::ios::binary) << "caf\xe9 au lait\n";
    auto b = o;
    b.pretrain_data = out + "/latin1.txt";
    fails(b);
  }
  {
    std::ofstream(out + "/a_file") << "x";
    auto b = o;
    b.out_dir = out + "/a_file/sub";  // under a regular file: not creatable
    fails(b);
  }
  {
    auto b = o;
    b.base = out + "/no_such_model";
    fails(b);
  }
  {
    auto b = o;
    b.train.model = "gpt7-giant";
    fails(b);
  }
  {
    auto b = o;
    b.serving = true;
    b.methods = {"full"};
    fails(b);
  }
}

}  // namespace
}  // namespace mp::test
