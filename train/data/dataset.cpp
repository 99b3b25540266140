#include "train/data/dataset.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "engine/error.h"
#include "nn/atomic_file.h"
#include "train/data/line_reader.h"

namespace mp::train {

namespace {

constexpr char kMagic[8] = {'M', 'P', 'T', 'O', 'K', 'v', '1', '\0'};

struct CacheHeader {
  char magic[8];
  uint64_t text_bytes;
  uint64_t text_hash;  // FNV-1a 64 of the text
  uint64_t count;      // number of uint16 ids that follow
};

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string read_text(const std::string& path) {
  std::ifstream in = open_input_file(path, "data file");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.empty()) fail("data file {} is empty", path);
  return text;
}

// The cached ids, or nothing when the cache is absent or stale.
std::vector<int32_t> read_cache(const std::string& cache_path, const std::string& text) {
  std::ifstream in(cache_path, std::ios::binary);
  CacheHeader h{};
  if (!in || !in.read(reinterpret_cast<char*>(&h), sizeof h)) return {};
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0 || h.text_bytes != text.size() || h.text_hash != fnv1a(text))
    return {};
  std::vector<uint16_t> ids16(h.count);
  if (!in.read(reinterpret_cast<char*>(ids16.data()), std::streamsize(h.count * 2))) return {};
  return {ids16.begin(), ids16.end()};
}

void write_cache(const std::string& cache_path, const std::string& text, const std::vector<int32_t>& ids) {
  CacheHeader h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.text_bytes = text.size();
  h.text_hash = fnv1a(text);
  h.count = ids.size();
  std::vector<uint16_t> ids16(ids.begin(), ids.end());
  std::string bytes(reinterpret_cast<const char*>(&h), sizeof h);
  bytes.append(reinterpret_cast<const char*>(ids16.data()), ids16.size() * 2);
  try {
    nn::write_file_atomically(cache_path, bytes);
  } catch (const Error& e) {
    std::fprintf(stderr, "note: token cache not written (%s)\n", e.what());
  }
}

}  // namespace

std::vector<int32_t> load_token_ids(const std::string& text_path, const models::Tokenizer& tokenizer) {
  std::string text = read_text(text_path);
  std::string cache_path = text_path + ".tokens.bin";
  std::vector<int32_t> ids = read_cache(cache_path, text);
  if (!ids.empty()) return ids;
  try {
    ids = tokenizer.encode(text);
  } catch (const Error& e) {
    fail("data file {}: {}", text_path, e.what());
  }
  if (tokenizer.vocab_size() > 65536) fail("vocabulary of {} does not fit the uint16 token cache", tokenizer.vocab_size());
  write_cache(cache_path, text, ids);
  return ids;
}

TokenDataset::TokenDataset(std::vector<int32_t> ids, double val_fraction, const std::string& name)
    : ids_(std::move(ids)), name_(name) {
  if (!(val_fraction >= 0 && val_fraction <= 1)) fail("validation fraction {} is not in [0, 1]", val_fraction);
  split_ = int64_t(double(ids_.size()) * (1 - val_fraction));
}

void TokenDataset::check_fits(int64_t tokens, int64_t T, const char* part) const {
  if (tokens < T) fail("{}: the {} part has {} tokens, too few for sequences of {}", name_, part, tokens, T);
}

Tensor TokenDataset::make_batch(const std::vector<int64_t>& starts, int64_t T) const {
  int64_t B = int64_t(starts.size());
  Tensor ids = Tensor::empty({B, T}, DType::i32);  // (B, T)
  for (int64_t r = 0; r < B; ++r) std::memcpy(ids.data<int32_t>() + r * T, ids_.data() + starts[r], size_t(T) * 4);
  return ids;
}

Tensor TokenDataset::train_batch(int64_t B, int64_t T, uint64_t seed, int64_t step, nn::BatchRows rows) const {
  check_fits(split_, T, "training");
  if (rows.count == 0) rows = {0, B};
  if (rows.first < 0 || rows.first + rows.count > B) fail("rows [{}, +{}) of a batch of {}", rows.first, rows.count, B);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + uint64_t(step));
  std::uniform_int_distribution<int64_t> start(0, split_ - T);
  std::vector<int64_t> starts(static_cast<size_t>(B));
  for (int64_t& s : starts) s = start(rng);
  return make_batch({starts.begin() + rows.first, starts.begin() + rows.first + rows.count}, T);
}

std::vector<Tensor> TokenDataset::val_batches(int64_t B, int64_t T, int64_t max_batches) const {
  check_fits(val_tokens(), T, "held-out");
  std::vector<Tensor> out;
  std::vector<int64_t> starts;
  for (int64_t s = split_; s + T <= int64_t(ids_.size()) && int64_t(out.size()) < max_batches; s += T) {
    starts.push_back(s);
    if (int64_t(starts.size()) == B) {
      out.push_back(make_batch(starts, T));
      starts.clear();
    }
  }
  if (!starts.empty() && int64_t(out.size()) < max_batches) out.push_back(make_batch(starts, T));
  return out;
}

}  // namespace mp::train
