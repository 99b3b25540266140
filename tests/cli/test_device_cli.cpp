// --device on the command line: train, eval and generate on the sim device
// print what they print on the CPU, bench plans the sim device to the byte,
// compare runs there; a device that does not exist is refused.
#include <doctest/doctest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/support/minipeft.h"

using mp::test::minipeft;
using mp::test::Run;

TEST_CASE("train, eval and generate with --device sim give the CPU's output") {
  mp::test::TempDir d("device_cli");
  const std::string pairs = mp::test::data_path("pairs_example.jsonl");
  std::string out[2];
  for (int i = 0; i < 2; ++i) {
    const std::string device = i == 0 ? "cpu" : "sim";
    Run r = minipeft("train --no-progress --method lora --steps 3 --seq 16 --device " + device + " --data " + pairs +
                     " --out " + d / device);
    REQUIRE_MESSAGE(r.code == 0, r.output);
    const std::string adapter = " --device " + device + " --adapter " + d / (device + "/final");
    Run e = minipeft("eval --json --val-fraction 1 --data " + pairs + adapter);
    REQUIRE_MESSAGE(e.code == 0, e.output);
    Run g = minipeft("generate --max-new-tokens 6 --no-eos --prompt 'Permission is'" + adapter);
    REQUIRE_MESSAGE(g.code == 0, g.output);
    out[i] = e.output + g.output;
  }
  CHECK(out[1] == out[0]);
  CHECK(nlohmann::json::parse(out[0].substr(0, out[0].find('\n')))["loss"].get<double>() > 0);
}

TEST_CASE("--device names a device the program has, or the run stops before any work") {
  Run r = minipeft("train --no-progress --steps 1 --device gpu");
  CHECK(r.code == 1);
  CHECK(r.output.find("device 'gpu': expected cpu, cuda, cuda:N") != std::string::npos);
  r = minipeft("eval --device cuda:x");
  CHECK(r.code == 1);
  CHECK(r.output.find("device 'cuda:x'") != std::string::npos);
}

// The planner runs the step on meta with the host's kernels' allocations; the
// sim device runs those kernels on its own pool, every scratch buffer
// included (the gradient norm too: summed in place, not widened to f64), so
// its ledger must match the plan to the byte: every tag's peak, the peak of
// the sum, and the allocator's reserved blocks.
TEST_CASE("bench --device sim: the device's ledger peaks and reserved bytes are the planned ones, to the byte") {
  for (const char* run : {"--method full", "--method lora", "--method prefix", "--method prompt", "--method ia3",
                          "--method lora --use-dora --base-dtype nf4", "--method lora --recompute --precision bf16"}) {
    CAPTURE(run);
    Run r = minipeft(std::string("bench --model gpt2-tiny --batch 2 --seq 32 --steps 2 --device sim --json ") + run);
    REQUIRE_MESSAGE(r.code == 0, r.output);
    const nlohmann::json j = nlohmann::json::parse(r.output);
    CHECK(j["device"] == "sim");
    CHECK(j["planned_peak_bytes"].get<size_t>() == j["peak_bytes"]["total"].get<size_t>());
    CHECK(j["planned_reserved_peak_bytes"].get<size_t>() == j["peak_reserved_bytes"].get<size_t>());
    CHECK(j["peak_reserved_bytes"].get<size_t>() >= j["peak_bytes"]["total"].get<size_t>());  // blocks hold their tensors
    for (const auto& [tag, bytes] : j["planned_tag_peak_bytes"].items()) {
      CAPTURE(tag);
      CHECK(bytes.get<size_t>() == j["peak_bytes"][tag].get<size_t>());
    }
  }
}

// compare --device: the pretraining and every adaptation run on the device,
// and the held-out sets made on the host are evaluated there; the losses are
// the CPU's, bit for bit (the sim device runs the CPU's kernels).
TEST_CASE("compare --quick --device sim: the CPU's losses for every method") {
  mp::test::TempDir d("device_compare");
  nlohmann::json results[2];
  for (int i = 0; i < 2; ++i) {
    const std::string device = i == 0 ? "cpu" : "sim";
    Run r = minipeft("compare --quick --no-progress --methods full,lora,prompt --device " + device + " --out " +
                     d / device);
    REQUIRE_MESSAGE(r.code == 0, r.output);
    std::ifstream in(d / (device + "/results.json"));
    results[i] = nlohmann::json::parse(in);
  }
  REQUIRE(results[0]["methods"].size() == 3);
  for (size_t m = 0; m < 3; ++m) {
    const nlohmann::json &cpu = results[0]["methods"][m], &sim = results[1]["methods"][m];
    CAPTURE(cpu["method"].get<std::string>());
    for (const char* key : {"licence_loss_init", "licence_loss_after", "shakespeare_loss_after"})
      CHECK(sim[key].get<double>() == cpu[key].get<double>());
    REQUIRE(sim["steps"].size() == cpu["steps"].size());
    for (size_t s = 0; s < cpu["steps"].size(); ++s) CHECK(sim["steps"][s]["loss"] == cpu["steps"][s]["loss"]);
  }
}
