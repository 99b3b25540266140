// One training step (forward + backward + AdamW) and one forward pass of a
// model at a shape, timed step by step: wall time and this process's CPU
// time (all threads) per step, then the minimum and the median. On a shared
// machine the minimum wall time is the least disturbed step, and the CPU
// time shows work done whatever the load (threads that spin-wait count too).
//
//   OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 bench_step [model] [method] [batch] [seq] [steps] [device] [precision] [base]
//   bench_step gpt2 full 4 64 5
//   bench_step gpt2 lora 4 64 5 cpu f32 nf4      (base: f32, bf16 or nf4, as --base-dtype)
//   bench_step gpt2 lora 8 1024 5 cuda bf16      (bench/gpu_check.sh)
//
// device: cpu (default) or cuda (the model is moved there after its random
// init; each step ends with a device synchronize). precision: f32 or bf16
// (autocast, autograd/autocast.h). It also prints the model FLOPs per token
// and the achieved model TFLOP/s at the best step: per token, 2 FLOPs per
// weight of every matmul (the layers' and the LM head's) forward, twice that
// backward for full fine-tuning (input and weight gradients) but once for a
// frozen base (input gradients only; the adapters are left out), plus
// 12 L T C for attention's scores and weighted sums (forward and backward,
// causal blocks counted in full), as in llm.c and PaLM.
//
// Like minipeft, it sets OMP_WAIT_POLICY=passive when that is unset
// (cli/omp_wait.h): without it, a step measures 1.7-2.6x slower.
//
// With MP_PROFILE=1 the CPU backend prints its per-kernel totals at exit
// (warm-up step included).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/error.h"
#include "nn/adamw.h"
#include "cli/omp_wait.h"
#include "train/data/paths.h"
#include "train/data/random_tokens.h"
#include "train/trainer.h"

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
  void print(const char* what, int64_t tokens, double flops_per_token) const {
    double wmin = *std::min_element(wall.begin(), wall.end());
    std::printf("%-8s wall min %7.3f s  median %7.3f s  (%8.1f tokens/s at the min, %.2f model TFLOP/s)   cpu median "
                "%7.3f s\n",
                what, wmin, median(wall), double(tokens) / wmin, double(tokens) / wmin * flops_per_token * 1e-12,
                median(cpu));
  }
};

// Weights in matmuls per token: the layers' projections and the LM head.
double matmul_weights(const models::ModelConfig& m) {
  const double C = m.hidden_size, L = m.num_layers;
  return L * (4 * C * C + 2 * C * m.ffn_dim) + double(m.vocab_size) * C;
}

DType parse_dtype(const char* what, const std::string& s) {
  if (s == "f32") return DType::f32;
  if (s == "bf16") return DType::bf16;
  fail("{} must be f32 or bf16, not '{}'", what, s);
}

}  // namespace

static int run(int argc, char** argv) {
  train::TrainConfig c;
  c.model = argc > 1 ? argv[1] : "gpt2";
  c.method = argc > 2 ? argv[2] : "full";
  c.batch = argc > 3 ? std::stoll(argv[3]) : 4;
  c.seq = argc > 4 ? std::stoll(argv[4]) : 64;
  const int steps = argc > 5 ? std::stoi(argv[5]) : 5;
  const Device device = parse_device(argc > 6 ? argv[6] : "cpu");
  c.precision = parse_dtype("precision", argc > 7 ? argv[7] : "f32");
  c.base_dtype = models::parse_base_dtype(argc > 8 ? argv[8] : "f32");
  c.progress = false;
  c.validate();
  models::Tokenizer tok = models::Tokenizer::from_dir(train::default_tokenizer_dir());
  train::TrainedModel m = train::build_model(c, tok);
  m.module().to(device);
  Backend& dev = backend(device);

  Tensor ids = train::random_token_ids(c.batch, c.seq, m.base->vocab_size(), c.seed).to(device);  // (B, T)
  const int64_t tokens = c.batch * c.seq;
  const models::ModelConfig& mc = m.base->config();
  const double attention = 12.0 * mc.num_layers * double(c.seq) * mc.hidden_size;
  const double forward_flops = 2 * matmul_weights(mc) + attention / 3;
  const double train_flops = (m.peft ? 4 : 6) * matmul_weights(mc) + attention;

  nn::AdamW opt(train::trainable_parameters(m.module()), {.lr = c.effective_lr(), .weight_decay = c.weight_decay});
  Times train;
  for (int step = 0; step <= steps; ++step) {  // step 0 warms up
    double w0 = wall_now(), c0 = cpu_now();
    ag::Variable loss = m.loss(ids);
    loss.item();
    loss.backward();
    opt.step();
    opt.zero_grad();
    dev.synchronize();
    if (step > 0) train.add(wall_now() - w0, cpu_now() - c0);
  }
  Times fwd;
  {
    ag::NoGrad no_grad;
    m.module().eval();
    for (int step = 0; step <= steps; ++step) {
      double w0 = wall_now(), c0 = cpu_now();
      m.peft ? m.peft->forward(ids) : m.base->forward(ids);
      dev.synchronize();
      if (step > 0) fwd.add(wall_now() - w0, cpu_now() - c0);
    }
  }
  std::printf("%s %s B=%lld T=%lld on %s, %s, base %s, %d steps after one warm-up; model FLOPs per token: train "
              "%.4g, forward %.4g\n",
              c.model.c_str(), c.method.c_str(), static_cast<long long>(c.batch), static_cast<long long>(c.seq),
              device.str().c_str(), std::string(dtype_name(c.precision)).c_str(),
              std::string(models::base_dtype_name(c.base_dtype)).c_str(), steps, train_flops, forward_flops);
  train.print("train", tokens, train_flops);
  fwd.print("forward", tokens, forward_flops);
  return 0;
}

int main(int argc, char** argv) {
  restart_with_passive_omp_wait(argv);  // measure what minipeft runs
  try {
    return run(argc, argv);
  } catch (const Error& e) {  // a bad argument, or no such device
    std::fprintf(stderr, "bench_step: %s\n", e.what());
    return 1;
  }
}
