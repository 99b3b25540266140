// The memory planner beside the Ledger at real shapes: for each method, one
// training step planned on the meta device and the same step measured on
// the CPU (random weights), bytes per tag at the peak of the sum, and the
// time each took. Exit 1 if any planned byte differs from the measured one.
//
//   ./bench/plan_vs_measure gpt2 opt-125m opt-350m     (B=4, T=64 by default; --batch/--seq before the names)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "train/memory_plan.h"
#include "train/method_variants.h"
#include "train/data/paths.h"

using namespace mp;
using Clock = std::chrono::steady_clock;

namespace {

double mib(size_t b) { return double(b) / (1 << 20); }
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

int main(int argc, char** argv) {
  int64_t B = 4, T = 64;
  std::vector<std::string> models;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--batch" && i + 1 < argc) B = std::atoll(argv[++i]);
    else if (a == "--seq" && i + 1 < argc) T = std::atoll(argv[++i]);
    else models.push_back(a);
  }
  if (models.empty()) models = {"gpt2", "opt-125m", "opt-350m"};
  models::Tokenizer tok = models::Tokenizer::from_dir(train::default_tokenizer_dir());
  int mismatches = 0;
  for (const std::string& model : models) {
    std::printf("\n%s, B=%lld, T=%lld: MiB at the peak of the sum, planned = measured?\n", model.c_str(),
                (long long)B, (long long)T);
    std::printf("  %-24s %9s %9s %9s %9s %9s %9s %10s  %s  %7s %7s  %s\n", "method", "weights", "grads", "optim",
                "activ", "worksp", "adapter", "peak", "same", "plan s", "real s", "peak in");
    for (const train::MethodVariant& v : train::method_variants()) {
      train::TrainConfig config;
      config.model = model;
      config.batch = B;
      config.seq = T;
      v.apply(config);
      auto t0 = Clock::now();
      train::MemoryPlan plan = train::plan_training_memory(config, tok);
      const double plan_s = since(t0);
      t0 = Clock::now();
      train::MemoryPlan real = train::measure_training_memory(config, tok);
      const double real_s = since(t0);
      const bool same = plan.peak_total == real.peak_total && plan.at_peak.by_tag == real.at_peak.by_tag &&
                        plan.tag_peaks == real.tag_peaks;
      mismatches += !same;
      const TagBytes& b = real.at_peak.by_tag;
      std::printf("  %-24s %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %10.1f  %-4s  %7.2f %7.2f  %s %s\n", v.title,
                  mib(b[size_t(Tag::weights)]), mib(b[size_t(Tag::grads)]), mib(b[size_t(Tag::optimizer)]),
                  mib(b[size_t(Tag::activations)]), mib(b[size_t(Tag::workspace)]), mib(b[size_t(Tag::adapter)]),
                  mib(real.peak_total), same ? "yes" : "NO", plan_s, real_s, real.at_peak.phase.c_str(),
                  real.at_peak.op.c_str());
      if (!same) std::printf("    planned peak %.3f MiB\n", mib(plan.peak_total));
    }
  }
  return mismatches ? 1 : 0;
}
