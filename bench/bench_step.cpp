// One training step (forward + backward + AdamW) and one forward pass of a
// model at a shape, timed step by step: wall time and this process's CPU
// time (all threads) per step, then the minimum and the median. On a shared
// machine the minimum wall time is the least disturbed step, and the CPU
// time shows work done whatever the load (threads that spin-wait count too).
//
//   OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 bench_step [model] [method] [batch] [seq] [steps]
//   bench_step gpt2 full 4 64 5
//
// With MP_PROFILE=1 the CPU backend prints its per-kernel totals at exit
// (warm-up step included).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "nn/adamw.h"
#include "tools/paths.h"
#include "tools/trainer.h"

using namespace mp;

namespace {

double wall_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

struct Times {
  std::vector<double> wall, cpu;
  void add(double w, double c) {
    wall.push_back(w);
    cpu.push_back(c);
  }
  static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
  void print(const char* what, int64_t tokens) const {
    double wmin = *std::min_element(wall.begin(), wall.end());
    std::printf("%-8s wall min %7.3f s  median %7.3f s  (%8.1f tokens/s at the min)   cpu median %7.3f s\n", what,
                wmin, median(wall), double(tokens) / wmin, median(cpu));
  }
};

}  // namespace

int main(int argc, char** argv) {
  tools::TrainConfig c;
  c.model = argc > 1 ? argv[1] : "gpt2";
  c.method = argc > 2 ? argv[2] : "full";
  c.batch = argc > 3 ? std::stoll(argv[3]) : 4;
  c.seq = argc > 4 ? std::stoll(argv[4]) : 64;
  const int steps = argc > 5 ? std::stoi(argv[5]) : 5;
  c.progress = false;
  c.validate();
  models::Tokenizer tok = models::Tokenizer::from_dir(cli::default_tokenizer_dir());
  tools::TrainedModel m = tools::build_model(c, tok);

  Tensor ids = Tensor::empty({c.batch, c.seq}, DType::i32);  // (B, T) random tokens
  std::mt19937_64 rng(c.seed);
  std::uniform_int_distribution<int32_t> id(0, int32_t(m.base->vocab_size()) - 1);
  for (int64_t i = 0; i < ids.numel(); ++i) ids.data<int32_t>()[i] = id(rng);
  const int64_t tokens = c.batch * c.seq;

  nn::AdamW opt(tools::trainable_parameters(m.module()), {.lr = c.effective_lr(), .weight_decay = c.weight_decay});
  Times train;
  for (int step = 0; step <= steps; ++step) {  // step 0 warms up
    double w0 = wall_now(), c0 = cpu_now();
    ag::Variable loss = m.loss(ids);
    loss.item();
    loss.backward();
    opt.step();
    opt.zero_grad();
    if (step > 0) train.add(wall_now() - w0, cpu_now() - c0);
  }
  Times fwd;
  {
    ag::NoGrad no_grad;
    m.module().eval();
    for (int step = 0; step <= steps; ++step) {
      double w0 = wall_now(), c0 = cpu_now();
      m.peft ? m.peft->forward(ids) : m.base->forward(ids);
      if (step > 0) fwd.add(wall_now() - w0, cpu_now() - c0);
    }
  }
  std::printf("%s %s B=%lld T=%lld, %d steps after one warm-up\n", c.model.c_str(), c.method.c_str(),
              static_cast<long long>(c.batch), static_cast<long long>(c.seq), steps);
  train.print("train", tokens);
  fwd.print("forward", tokens);
  return 0;
}
