// The sim device (engine/device.h, engine/host_access.h): the CPU's kernels
// on a device of its own whose bytes host code may not read.
#include <doctest/doctest.h>

#include "engine/error.h"
#include "engine/ops.h"
#include "tests/engine/reference.h"

using namespace mp;
using namespace mp::test;

TEST_CASE("sim device: ops compute what the CPU computes, bit for bit, and outputs stay on the device") {
  Tensor a = rand_tensor({3, 5, 8}, 1), b = rand_tensor({8, 4}, 2), w = rand_tensor({4}, 3), bias = rand_tensor({4}, 4);
  auto run = [&](Device d) {
    Tensor x = ops::matmul(a.to(d), b.to(d));  // (3, 5, 4)
    Tensor y = ops::layer_norm(ops::unary(UnaryOp::gelu, x), w.to(d), bias.to(d), 1e-5f).y;
    Tensor s = ops::softmax(y);
    CHECK(s.device() == d);
    return s.to(kCPU);
  };
  CHECK(values(run(kSim)) == values(run(kCPU)));
}

TEST_CASE("sim device: host code may not read its bytes; copies and item() may") {
  Tensor t = Tensor::full({2, 3}, 1.5, DType::f32, kSim);
  CHECK_THROWS_WITH_AS(t.data<float>(), doctest::Contains("host code read a tensor of shape (2, 3) on device sim"),
                       Error);
  CHECK_THROWS_AS(t.raw(), Error);
  CHECK(t.to(kCPU).data<float>()[5] == 1.5f);
  CHECK(ops::sum_all(t).item() == 9.0);
  CHECK(t.at({1, 2}) == 1.5);
  Tensor back = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}).to(kSim);
  CHECK(back.device() == kSim);
  CHECK(values(back) == std::vector<double>{1, 2, 3});
}

TEST_CASE("device names parse, and a wrong one is refused by name") {
  CHECK(parse_device("cpu") == kCPU);
  CHECK(parse_device("sim") == kSim);
  CHECK(parse_device("cuda") == kCUDA);
  CHECK(parse_device("cuda:2") == Device{DeviceType::cuda, 2});
  CHECK(parse_device("cuda:2").str() == "cuda:2");
  for (const char* bad : {"gpu", "cuda:", "cuda:-1", "cuda:1x", ""}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(parse_device(bad), doctest::Contains("expected cpu, cuda, cuda:N"), Error);
  }
}
