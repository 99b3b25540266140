// Encode throughput of the GPT-2 tokenizer, single thread, in MB/s.
//
// From the repository root:
//   build/bench/tokenizer_bench [data/tinyshakespeare/input.txt] [data/gpt2-tokenizer]
// Compare with reference/tokenizer_bench.py (tiktoken, HF tokenizers).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/error.h"
#include "models/tokenizer.h"

int main(int argc, char** argv) try {
  const std::string text_path = argc > 1 ? argv[1] : "data/tinyshakespeare/input.txt";
  const std::string tokenizer_dir = argc > 2 ? argv[2] : "data/gpt2-tokenizer";

  std::ifstream in(text_path, std::ios::binary);
  if (!in) mp::fail("{}: cannot open", text_path);
  std::ostringstream content;
  content << in.rdbuf();
  const std::string text = content.str();

  using Clock = std::chrono::steady_clock;
  const auto load_start = Clock::now();
  const auto tokenizer = mp::models::Tokenizer::from_dir(tokenizer_dir);
  const double load_s = std::chrono::duration<double>(Clock::now() - load_start).count();

  // Best of several runs: the first also warms caches and the allocator.
  double best_s = 1e30;
  size_t tokens = 0;
  for (int run = 0; run < 7; ++run) {
    const auto start = Clock::now();
    tokens = tokenizer.encode(text).size();
    best_s = std::min(best_s, std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::printf("load %.3f s\n", load_s);
  std::printf("encode %s: %zu bytes -> %zu tokens, best %.1f ms, %.1f MB/s\n", text_path.c_str(), text.size(),
              tokens, best_s * 1e3, text.size() / best_s / 1e6);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
