// 2 ranks at micro-batch b against 1 rank at batch 2b, through mpirun and the
// built minipeft: the same per-step losses within 1e-5 relative, and final
// weights within 1e-5 of the model's largest weight (only the order of
// floating-point sums differs), for full fine-tuning, LoRA with dropout,
// prefix tuning, and LoRA on pairs; and with the 2 ranks on the sim device
// (their gradients and ZeRO's parameters staged through host buffers by the
// MPI communicator) against 1 rank on the CPU. gpt2-tiny has dropout 0.1 on embeddings, residuals and
// attention, so every mask must be keyed by the global row for this to hold.
//
// Why not 1e-5 of each tensor's own largest value: the key part of
// c_attn.bias has a gradient of exactly 0 in exact arithmetic (softmax does
// not change when every score of a row moves by the same amount), so what
// backward computes for it is rounding noise, and AdamW divides by its own
// size: those entries move by noise either way (measured: 2.7e-7, against
// 4.7e-4 for the tensor's largest entry after 3 steps at lr 3e-4).
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "engine/backend.h"
#include "tests/parallel/dist_helpers.h"

using namespace mp;
using namespace mp::test;

namespace {

std::string train_args(const std::string& method, int64_t batch, const std::string& out,
                       const std::string& data = data_path("legal/licenses.txt")) {
  return "train --no-progress --model gpt2-tiny --method " + method + " --data " + data +
         " --seq 32 --steps 3 --warmup 1 --seed 5 --lora-dropout 0.1 --virtual-tokens 4 --batch " +
         std::to_string(batch) + " --out " + out;
}

// How the 2-rank runs differ from the 1-rank run they must match: `extra`
// arguments for every run, `device` for the 2 ranks (the 1 rank is on the CPU).
struct Variant {
  std::string data = data_path("legal/licenses.txt");
  std::string extra;
  std::string device = "cpu";
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string final_weights(const std::string& method, const std::string& out) {
  return train::final_model_dir(out) + (method == "full" ? "/model.safetensors" : "/adapter_model.safetensors");
}

void check_two_ranks_match_one(const std::string& method, const Variant& v = {}) {
  TempDir dir("dist");
  const std::string one = dir.str() + "/one", two = dir.str() + "/two";
  Run r1 = minipeft(train_args(method, 4, one, v.data) + v.extra);
  REQUIRE_MESSAGE(r1.code == 0, r1.output);
  const std::string ranks_args = v.extra + " --device " + v.device;
  Run r2 = mpirun(2, train_args(method, 2, two, v.data) + ranks_args);
  REQUIRE_MESSAGE(r2.code == 0, r2.output);
  CHECK(r2.output.find("2 ranks (MPI) x batch 2 = global batch 4") != std::string::npos);
  // Rank 0 alone prints the summary.
  size_t summaries = 0;
  for (size_t at = 0; (at = r2.output.find("final loss", at)) != std::string::npos; ++at) ++summaries;
  CHECK(summaries == 1);

  std::vector<double> l1 = logged_losses(one), l2 = logged_losses(two);
  REQUIRE(l1.size() == 3);
  REQUIRE(l2.size() == 3);
  for (size_t i = 0; i < l1.size(); ++i) CHECK(std::abs(l2[i] - l1[i]) <= 1e-5 * std::abs(l1[i]));
  const double worst = max_relative_difference(tensors_of(final_weights(method, two)), tensors_of(final_weights(method, one)));
  INFO("largest difference of a final weight, relative to the largest weight: " << worst);
  CHECK(worst <= 1e-5);

  // ZeRO-1 runs AdamW's kernel on the same numbers, a shard per rank: the
  // same losses and final file, bit for bit.
  const std::string zero = dir.str() + "/zero";
  Run rz = mpirun(2, train_args(method, 2, zero, v.data) + ranks_args + " --zero 1");
  REQUIRE_MESSAGE(rz.code == 0, rz.output);
  CHECK(logged_losses(zero) == l2);
  CHECK(read_bytes(final_weights(method, zero)) == read_bytes(final_weights(method, two)));
}

}  // namespace

TEST_CASE("data parallel: full fine-tuning on 2 ranks matches 1 rank at twice the batch") {
  check_two_ranks_match_one("full");
}

TEST_CASE("data parallel: LoRA with dropout on 2 ranks matches 1 rank at twice the batch") {
  check_two_ranks_match_one("lora");
}

TEST_CASE("data parallel: prefix tuning on 2 ranks matches 1 rank at twice the batch") {
  check_two_ranks_match_one("prefix");
}

// Each rank's rows of a pairs batch hold a different number of completion
// tokens: weighted by them (train/train_step.h), the ranks' losses and
// gradients average to the global batch's token mean.
TEST_CASE("data parallel: LoRA on prompt/completion pairs on 2 ranks matches 1 rank at twice the batch") {
  TempDir dir("pairs");
  const std::string pairs = dir.str() + "/pairs.jsonl";
  std::ofstream out(pairs);
  for (int i = 0; i < 60; ++i) {  // completions of 1 to 9 words
    std::string completion;
    for (int w = 0; w <= (i * 7) % 9; ++w) completion += " word" + std::to_string(w);
    out << R"({"prompt": "count )" << i << R"(:", "completion": ")" << completion << "\"}\n";
  }
  out.close();
  check_two_ranks_match_one("lora", {.data = pairs});
}

// The sim device's bytes may not be read by host code, as a GPU's: MPI gets
// each bucket (and ZeRO's shards) through the communicator's host buffers.
// Unsummed buckets would leave each rank with its own half-batch gradient
// and the losses from step 2 on would differ from the CPU's.
TEST_CASE("data parallel on sim: 2 ranks match 1 CPU rank at twice the batch, with ZeRO-1 and grad-accum") {
  check_two_ranks_match_one("full", {.device = "sim"});
  check_two_ranks_match_one("lora", {.extra = " --grad-accum 2", .device = "sim"});
}

// ZeRO's checkpoint gathers the shards of m and v (an all-gather of sim
// tensors, staged) and a resume picks each rank's shard back onto the device.
TEST_CASE("data parallel on sim: a ZeRO-1 checkpoint resumes on 2 ranks bit for bit") {
  TempDir dir("dist");
  auto args = [&](const std::string& out) {
    return "train --no-progress --model gpt2-tiny --method full --device sim --zero 1 --data " +
           data_path("legal/licenses.txt") + " --seq 32 --batch 2 --steps 4 --out " + out;
  };
  const std::string whole = dir.str() + "/whole", part = dir.str() + "/part";
  Run w = mpirun(2, args(whole));
  REQUIRE_MESSAGE(w.code == 0, w.output);
  Run first = mpirun(2, args(part) + " --stop-after 2");
  REQUIRE_MESSAGE(first.code == 0, first.output);
  Run rest = mpirun(2, args(part) + " --resume");
  REQUIRE_MESSAGE(rest.code == 0, rest.output);
  CHECK(logged_losses(part) == logged_losses(whole));
  CHECK(read_bytes(final_weights("full", part)) == read_bytes(final_weights("full", whole)));
}

// The device is chosen per rank: a GPU named by index would be every rank's.
// Without CUDA, --device cuda under mpirun is the error it is in one process.
TEST_CASE("data parallel: --device cuda:N on 2 ranks is refused; cuda without a GPU is the one-process error") {
  Run r = mpirun(2, "train --no-progress --model gpt2-tiny --steps 1 --device cuda:1");
  CHECK(r.code == 1);
  CHECK(r.output.find("--device cuda:1 under mpirun with 2 ranks: every rank would use that one GPU") !=
        std::string::npos);
  if (has_backend(DeviceType::cuda)) return;
  r = mpirun(2, "train --no-progress --model gpt2-tiny --steps 1 --device cuda --data /nonexistent/never-read.txt");
  INFO(r.output);
  CHECK(r.code == 1);
  CHECK(r.output.find("no backend for device cuda:0") != std::string::npos);
}

TEST_CASE("data parallel: a bad input on every rank stops the job with one clear error, exit 1") {
  TempDir dir("dist");
  Run r = mpirun(2, "train --no-progress --model gpt2-tiny --steps 2 --data " + dir.str() + "/missing.txt");
  INFO(r.output);
  CHECK(r.code == 1);
  CHECK(r.output.find("error: rank 0 of 2: cannot read data file " + dir.str() + "/missing.txt") != std::string::npos);
}

// AdamW keeps m and v, 4 bytes each, per trainable parameter: 8 P bytes on
// one rank; ZeRO-1 on 2 ranks leaves P / 2 elements of each per rank, so
// every rank's ledger shows 4 P optimizer bytes, to the byte, and the
// planner (`info --ranks 2 --zero 1`) says the same before the run.
TEST_CASE("ZeRO-1 on 2 ranks: each rank's optimizer state is half of one rank's, to the byte, as planned") {
  TempDir dir("dist");
  const std::string common = "--model gpt2-tiny --method full --seq 32 --batch 2";
  Run info1 = minipeft("info --json " + common);
  REQUIRE_MESSAGE(info1.code == 0, info1.output);
  const nlohmann::json plan1 = nlohmann::json::parse(info1.output);
  const int64_t P = plan1["trainable_params"].get<int64_t>();
  REQUIRE(P % 2 == 0);
  CHECK(plan1["tag_peak_bytes"]["optimizer"].get<int64_t>() == 8 * P);

  Run info2 = minipeft("info --json --ranks 2 --zero 1 " + common);
  REQUIRE_MESSAGE(info2.code == 0, info2.output);
  CHECK(nlohmann::json::parse(info2.output)["tag_peak_bytes"]["optimizer"].get<int64_t>() == 4 * P);

  Run run = mpirun(2, "train --no-progress --steps 2 --zero 1 --data " + data_path("legal/licenses.txt") + " " + common);
  REQUIRE_MESSAGE(run.code == 0, run.output);
  const std::string half = std::to_string(4 * P);
  CHECK(run.output.find("optimizer state by rank: " + half + ", " + half + " bytes") != std::string::npos);
  // Without ZeRO every rank holds all of it.
  Run plain = mpirun(2, "train --no-progress --steps 2 --data " + data_path("legal/licenses.txt") + " " + common);
  REQUIRE_MESSAGE(plain.code == 0, plain.output);
  const std::string whole = std::to_string(8 * P);
  CHECK(plain.output.find("optimizer state by rank: " + whole + ", " + whole + " bytes") != std::string::npos);
}

// One rank SIGKILLed (MP_TRAIN_KILL_AT on MP_TRAIN_KILL_RANK alone): mpirun
// ends the job with an error naming the signal, in bounded time, the
// checkpoint is whole (the last one completed), and a 2-rank --resume
// continues to the same losses and final weights as an uninterrupted run,
// bit for bit. Rank 0 killed halfway through its checkpoint write leaves a
// temporary beside the previous checkpoint, never a torn one.
TEST_CASE("data parallel: a rank killed mid-run stops the job; a 2-rank resume matches the uninterrupted run bit for bit") {
  TempDir dir("dist");
  auto args = [&](const std::string& out) {
    return "train --no-progress --model gpt2-tiny --method lora --lora-dropout 0.1 --data " +
           data_path("legal/licenses.txt") + " --seq 32 --batch 2 --steps 8 --warmup 2 --checkpoint-every 3 --out " + out;
  };
  const std::string whole = dir.str() + "/whole";
  Run r = mpirun(2, args(whole));
  REQUIRE_MESSAGE(r.code == 0, r.output);
  const std::vector<double> want = logged_losses(whole);
  REQUIRE(want.size() == 8);

  struct Case {
    std::string kill_at, rank, says;
    int64_t checkpointed;
  };
  for (const Case& c : {Case{"after-log:5", "1", "signal 9", 3}, Case{"in-checkpoint:6", "0", "signal 25", 3}}) {
    CAPTURE(c.kill_at);
    CAPTURE(c.rank);
    const std::string out = dir.str() + "/killed_" + c.rank;
    const auto start = std::chrono::steady_clock::now();
    Run killed = mpirun(2, args(out), "-x MP_TRAIN_KILL_AT=" + c.kill_at + " -x MP_TRAIN_KILL_RANK=" + c.rank);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(killed.code != 0);
    INFO(killed.output);
    CHECK(killed.output.find(c.says) != std::string::npos);
    CHECK(seconds < 60);
    nn::SafetensorsFile f = nn::SafetensorsFile::open(train::checkpoint_path(out));  // whole: it opens
    CHECK(nlohmann::json::parse(f.metadata().at("minipeft_checkpoint"))["step"].get<int64_t>() == c.checkpointed);

    Run resumed = mpirun(2, args(out) + " --resume");
    REQUIRE_MESSAGE(resumed.code == 0, resumed.output);
    CHECK(logged_losses(out) == want);  // exactly
    CHECK(read_bytes(final_weights("lora", out)) == read_bytes(final_weights("lora", whole)));
  }
}

// The global batch is what a checkpoint belongs to: 2 ranks x 2 resume as
// 1 rank x 4, say so, and continue within rounding of the 2-rank run.
TEST_CASE("data parallel: a 2-rank checkpoint resumes on 1 rank at the same global batch, resharded") {
  TempDir dir("dist");
  auto args = [&](const std::string& out, int batch) {
    return "train --no-progress --model gpt2-tiny --method full --data " + data_path("legal/licenses.txt") +
           " --seq 32 --steps 4 --zero 1 --batch " + std::to_string(batch) + " --out " + out;
  };
  const std::string whole = dir.str() + "/whole", part = dir.str() + "/part";
  REQUIRE(mpirun(2, args(whole, 2)).code == 0);
  Run first = mpirun(2, args(part, 2) + " --stop-after 2");
  REQUIRE_MESSAGE(first.code == 0, first.output);
  Run rest = minipeft(args(part, 4) + " --resume");
  REQUIRE_MESSAGE(rest.code == 0, rest.output);
  CHECK(rest.output.find("resuming on 1 rank(s) a run checkpointed on 2: the same global batch of 4, resharded") !=
        std::string::npos);
  const std::vector<double> want = logged_losses(whole), got = logged_losses(part);
  REQUIRE(got.size() == 4);
  for (size_t i = 0; i < 4; ++i) CHECK(std::abs(got[i] - want[i]) <= 1e-5 * std::abs(want[i]));
  CHECK(max_relative_difference(tensors_of(final_weights("full", part)), tensors_of(final_weights("full", whole))) <= 1e-5);
  // A different global batch is a different run.
  Run other = minipeft(args(part, 2) + " --resume");
  CHECK(other.code == 1);
  CHECK(other.output.find("was written by a different run") != std::string::npos);
}

TEST_CASE("data parallel: compare (which writes its own files) refuses to run as several ranks") {
  Run r = mpirun(2, "compare --quick");
  CHECK(r.code != 0);
  CHECK(r.output.find("minipeft compare runs in one process, not under mpirun with 2 ranks") != std::string::npos);
}
