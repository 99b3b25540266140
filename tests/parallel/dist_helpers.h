// Shared by the data-parallel tests: run minipeft under mpirun, read a run's
// log and final weights, compare within a relative tolerance.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/safetensors.h"
#include "tests/support/minipeft.h"
#include "train/trainer.h"

namespace mp::test {

// `ranks` processes of minipeft with `args`, one OpenMP thread each (the
// machine may have fewer cores than ranks x threads). Under AddressSanitizer
// (CI's second build) the ranks do not check leaks: OpenMPI's plugins leave
// allocations behind after MPI_Finalize and are unloaded by then, so no
// suppression can name them. Memory errors are still caught, and the same
// code without MPI runs with leak checks in the other suites.
inline Run mpirun(int ranks, const std::string& args, const std::string& env = "") {
  const std::string cmd = env_dir("MP_MPIRUN") + " -np " + std::to_string(ranks) +
                          " --oversubscribe --allow-run-as-root -x OMP_NUM_THREADS=1 -x ASAN_OPTIONS=detect_leaks=0 " +
                          env + " " + env_dir("MP_MINIPEFT") + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  Run r{0, ""};
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) r.output.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

inline std::vector<double> logged_losses(const std::string& out_dir) {
  std::ifstream in(train::log_path(out_dir));
  std::vector<double> losses;
  for (std::string line; std::getline(in, line);) losses.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return losses;
}

// The tensors of a safetensors file, by name, as f64 values.
inline std::map<std::string, std::vector<double>> tensors_of(const std::string& path) {
  nn::SafetensorsFile f = nn::SafetensorsFile::open(path);
  std::map<std::string, std::vector<double>> out;
  for (const std::string& name : f.names()) {
    Tensor t = f.load(name, DType::f64);
    out[name].assign(t.data<double>(), t.data<double>() + t.numel());
  }
  return out;
}

// The largest |got - want| over every tensor, relative to the largest |want|.
inline double max_relative_difference(const std::map<std::string, std::vector<double>>& got,
                                      const std::map<std::string, std::vector<double>>& want) {
  REQUIRE(got.size() == want.size());
  double scale = 0, diff = 0;
  for (const auto& [name, w] : want) {
    REQUIRE_MESSAGE(got.count(name), name);
    const std::vector<double>& g = got.at(name);
    REQUIRE(g.size() == w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      scale = std::max(scale, std::abs(w[i]));
      diff = std::max(diff, std::abs(g[i] - w[i]));
    }
  }
  return scale > 0 ? diff / scale : diff;
}

}  // namespace mp::test
