// The communicator without mpirun: one process is the identity, a
// collective that never completes fails after its timeout naming the rank,
// ZeRO-1 over one rank is AdamW bit for bit, with AdamW's checkpoint keys,
// the host buffers MPI stages device tensors through copy once each way and
// are reused, and the device decides the communicator and, under mpirun, the GPU.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <cstdlib>

#include "parallel/communicator.h"
#include "parallel/host_staging.h"
#include "parallel/zero_adamw.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "nn/adamw.h"
#include "tests/support/minipeft.h"

using namespace mp;

TEST_CASE("one process: all-reduce leaves the tensor, all-gather copies it") {
  std::unique_ptr<parallel::Communicator> comm = parallel::single_process();
  CHECK(comm->size() == 1);
  Tensor x = Tensor::from_vector(std::vector<float>{1, -2, 3}, {3});
  Tensor copy = x.clone();
  comm->all_reduce_sum(x)->wait();
  CHECK(ops::max_abs_diff(x, copy) == 0);
  Tensor whole = Tensor::zeros({3});
  comm->all_gather(x, whole)->wait();
  CHECK(ops::max_abs_diff(whole, copy) == 0);
  CHECK(parallel::all_reduce_sum(*comm, 2.5) == 2.5);
  CHECK_THROWS_AS(comm->all_gather(x, Tensor::zeros({4})), Error);
}

TEST_CASE("host staging: a sim tensor is copied to a host buffer and back, once each way; the buffer is reused") {
  parallel::HostStaging staging;
  const Tensor values = Tensor::from_vector(std::vector<float>{1, -2, 3, 4, 5, 6}, {2, 3});
  const Tensor t = values.to(kSim);  // (2, 3)
  for (int round = 0; round < 2; ++round) {
    const Tensor now = t.to(kCPU);
    const uint64_t before = host_transfers();
    Tensor host = staging.take(t, true);
    CHECK(host.device() == kCPU);
    CHECK(host.tag() == Tag::workspace);
    CHECK(host.shape() == t.shape());
    CHECK(ops::max_abs_diff(host, now) == 0);
    ops::axpby(2.f, host, 0.f, host);  // what a collective would write
    staging.give_back(host, t, true);
    CHECK(host_transfers() - before == 2);
    CHECK(staging.buffers() == 1);  // the same buffer each round
    CHECK(ops::max_abs_diff(t.to(kCPU), values) == (round == 0 ? 6 : 18));  // 2x, then 4x the values
  }
  // An output-only buffer is not filled; another size gets its own buffer.
  const uint64_t before = host_transfers();
  Tensor out = staging.take(Tensor::zeros({4}, DType::f32, kSim), false);
  CHECK(host_transfers() == before);
  staging.give_back(out, Tensor::zeros({4}, DType::f32, kSim), false);
  CHECK(staging.buffers() == 2);
  // A CPU tensor is its own buffer.
  CHECK(staging.take(values, true).storage() == values.storage());
  CHECK(host_transfers() == before);
}

TEST_CASE("the communicator is a function of the device; without mpirun the device is the one named") {
  CHECK(&parallel::world(kSim) == &parallel::world());
  CHECK(&parallel::world(kCUDA) == &parallel::world());  // one process: nothing to sum over
  CHECK(parallel::rank_device("cuda:1") == Device{DeviceType::cuda, 1});
  CHECK(parallel::rank_device("sim") == kSim);
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);  // as mpirun sets it, read without starting MPI
  CHECK_THROWS_WITH_AS(parallel::rank_device("cuda:1"),
                       doctest::Contains("--device cuda:1 under mpirun with 2 ranks: every rank would use that one GPU"),
                       Error);
  CHECK(parallel::rank_device("sim") == kSim);
  unsetenv("OMPI_COMM_WORLD_SIZE");
}

TEST_CASE("a collective that never completes fails after the timeout, naming the rank") {
  bool gave_up = false;
  CHECK_THROWS_WITH_AS(parallel::wait_for([] { return false; }, 3, "an all-reduce", 0.05, [&] { gave_up = true; }),
                       doctest::Contains("rank 3: an all-reduce did not complete in 0.05 s"), Error);
  CHECK(gave_up);
  setenv("MP_DIST_TIMEOUT", "soon", 1);
  CHECK_THROWS_WITH_AS(parallel::collective_timeout(), doctest::Contains("MP_DIST_TIMEOUT=soon"), Error);
  setenv("MP_DIST_TIMEOUT", "2.5", 1);
  CHECK(parallel::collective_timeout() == 2.5);
  unsetenv("MP_DIST_TIMEOUT");
  CHECK(parallel::collective_timeout() == 600);
}

TEST_CASE("ZeRO-1 on one rank is AdamW, bit for bit, and speaks AdamW's state keys") {
  auto make = [](uint32_t seed) {
    std::vector<nn::NamedParameter> ps;
    for (int k = 0; k < 3; ++k) {
      Tensor t = Tensor::empty({k + 2, 3});
      ops::random(t, Distribution::normal, 0, 1, seed + uint64_t(k));
      ps.emplace_back(fmt::format("p{}", k), ag::Variable(t, true));
    }
    return ps;
  };
  std::vector<nn::NamedParameter> a = make(1), b = make(1);
  std::unique_ptr<parallel::Communicator> comm = parallel::single_process();
  nn::AdamWOptions options{.lr = 0.1, .weight_decay = 0.01};
  nn::AdamW plain(a, options);
  parallel::ZeroAdamW zero(*comm, b, options);
  CHECK(zero.total_elements() == 2 * 3 + 3 * 3 + 4 * 3);
  for (int step = 0; step < 3; ++step) {
    for (size_t k = 0; k < a.size(); ++k) {
      Tensor g = Tensor::empty(a[k].second.shape());
      ops::random(g, Distribution::normal, 0, 1, uint64_t(100 + step * 10 + int(k)));
      a[k].second.impl()->grad = g;
      b[k].second.impl()->grad = g.clone();
    }
    plain.step();
    zero.step();
  }
  for (size_t k = 0; k < a.size(); ++k) CHECK(ops::max_abs_diff(a[k].second.value(), b[k].second.value()) == 0);
  CHECK(zero.state_bytes() == plain.state_bytes());
  const nn::TensorMap sa = plain.state_dict(), sb = zero.state_dict();
  REQUIRE(sa.size() == sb.size());
  for (const auto& [key, t] : sa) {
    REQUIRE_MESSAGE(sb.count(key), key);
    CHECK(ops::max_abs_diff(t, sb.at(key)) == 0);
  }
  // AdamW's state loads into ZeRO (a checkpoint resumes either way); a wrong key is named.
  parallel::ZeroAdamW again(*comm, b, options);
  again.load_state_dict(sa);
  CHECK(ops::max_abs_diff(again.state_dict().at("m.p1"), sa.at("m.p1")) == 0);
  nn::TensorMap bad = sa;
  bad["m.nope"] = sa.at("m.p1");
  CHECK_THROWS_WITH_AS(again.load_state_dict(bad), doctest::Contains("m.nope"), Error);
}

TEST_CASE("bad data-parallel options are one-line errors, exit 1") {
  test::Run r = test::minipeft("info --model gpt2-tiny --ranks 0");
  CHECK(r.code == 1);
  CHECK(r.output.find("--ranks must be at least 1, got 0") != std::string::npos);
  r = test::minipeft("info --model gpt2-tiny --zero 2");
  CHECK(r.code == 1);
  CHECK(r.output.find("--zero 2: only stage 1") != std::string::npos);
}
