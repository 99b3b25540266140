// NF4 on the GPU (cuda/nf4.cu) against the CPU: the dequantized values bit for
// bit (the same roundings), and the product with an NF4 weight both ways.
// Skipped (exit 77) without a GPU.
#define DOCTEST_CONFIG_IMPLEMENT
#include "tests/cuda/gpu_main.h"

#include <cmath>

#include "engine/nf4.h"
#include "engine/ops.h"
#include "engine/tensor.h"

using namespace mp;

namespace {

Tensor uniform(const Shape& s, uint64_t seed) {
  Tensor t = Tensor::empty(s);
  ops::random(t, Distribution::uniform, -1, 1, seed);
  return t;
}

Nf4Tensor to_gpu(const Nf4Tensor& q) {
  Nf4Tensor g = q;
  g.packed = q.packed.to(kCUDA);
  g.absmax = q.absmax.to(kCUDA);
  g.nested_absmax = q.nested_absmax.to(kCUDA);
  return g;
}

double max_rel_diff(const Tensor& got, const Tensor& want) {
  std::vector<float> g = got.to_floats(), w = want.to_floats();
  double err = 0, scale = 1e-30;
  for (size_t i = 0; i < w.size(); ++i) {
    err = std::max(err, double(std::fabs(g[i] - w[i])));
    scale = std::max(scale, double(std::fabs(w[i])));
  }
  return err / scale;
}

}  // namespace

TEST_CASE("nf4 on cuda: dequantized values equal the CPU's exactly; quantizing on cuda gives the CPU's bytes") {
  for (Shape s : {Shape{5, 7}, Shape{129, 129}, Shape{768, 2304}}) {
    CAPTURE(shape_str(s));
    Tensor w = uniform(s, 3);
    Nf4Tensor q = nf4_quantize(w);
    CHECK(nf4_dequantize(to_gpu(q)).to_floats() == nf4_dequantize(q).to_floats());
    Nf4Tensor qg = nf4_quantize(w.to(kCUDA));
    CHECK(qg.packed.to_floats() == q.packed.to_floats());
    CHECK(qg.absmax.to_floats() == q.absmax.to_floats());
    CHECK(qg.offset == q.offset);
  }
}

TEST_CASE("nf4_matmul on cuda equals the CPU's, forward and input gradient") {
  const int64_t O = 300, K = 200, N = 7;
  Nf4Tensor q = nf4_quantize(uniform({O, K}, 5));
  Nf4Tensor qg = to_gpu(q);
  Tensor x = uniform({N, K}, 6), g = uniform({N, O}, 7);
  CHECK(max_rel_diff(nf4_matmul(x.to(kCUDA), qg, true), nf4_matmul(x, q, true)) < 1e-5);
  CHECK(max_rel_diff(nf4_matmul(g.to(kCUDA), qg, false), nf4_matmul(g, q, false)) < 1e-5);
}

int main(int argc, char** argv) { return mp::test::run_on_gpu(argc, argv); }
