// 2 ranks at micro-batch b against 1 rank at batch 2b, through mpirun and the
// built minipeft: the same per-step losses within 1e-5 relative, and final
// weights within 1e-5 of the model's largest weight (only the order of
// floating-point sums differs), for full fine-tuning, LoRA with dropout and
// prefix tuning. gpt2-tiny has dropout 0.1 on embeddings, residuals and
// attention, so every mask must be keyed by the global row for this to hold.
//
// Why not 1e-5 of each tensor's own largest value: the key part of
// c_attn.bias has a gradient of exactly 0 in exact arithmetic (softmax does
// not change when every score of a row moves by the same amount), so what
// backward computes for it is rounding noise, and AdamW divides by its own
// size: those entries move by noise either way (measured: 2.7e-7, against
// 4.7e-4 for the tensor's largest entry after 3 steps at lr 3e-4).
#include <doctest/doctest.h>

#include <filesystem>

#include "tests/dist/dist_helpers.h"

using namespace mp;
using namespace mp::test;

namespace {

std::string train_args(const std::string& method, int64_t batch, const std::string& out) {
  return "train --no-progress --model gpt2-tiny --method " + method + " --data " + data_path("legal/licenses.txt") +
         " --seq 32 --steps 3 --warmup 1 --seed 5 --lora-dropout 0.1 --virtual-tokens 4 --batch " +
         std::to_string(batch) + " --out " + out;
}

std::string final_weights(const std::string& method, const std::string& out) {
  return tools::final_model_dir(out) + (method == "full" ? "/model.safetensors" : "/adapter_model.safetensors");
}

void check_two_ranks_match_one(const std::string& method, const std::string& extra = "") {
  TempDir dir("dist");
  const std::string one = dir.str() + "/one", two = dir.str() + "/two";
  Run r1 = minipeft(train_args(method, 4, one) + extra);
  REQUIRE_MESSAGE(r1.code == 0, r1.output);
  Run r2 = mpirun(2, train_args(method, 2, two) + extra);
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

TEST_CASE("data parallel: a bad input on every rank stops the job with one clear error, exit 1") {
  TempDir dir("dist");
  Run r = mpirun(2, "train --no-progress --model gpt2-tiny --steps 2 --data " + dir.str() + "/missing.txt");
  CHECK(r.code == 1);
  CHECK(r.output.find("error: rank 0 of 2: cannot read data file " + dir.str() + "/missing.txt") != std::string::npos);
}
