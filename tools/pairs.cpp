#include "tools/pairs.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/error.h"

namespace mp::tools {

namespace {

bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

std::string string_value(const nlohmann::json& obj, const char* key, const std::string& where) {
  const nlohmann::json& v = obj.at(key);
  if (!v.is_string()) fail("{}: \"{}\" must be a string, not {}", where, key, v.type_name());
  return v.get<std::string>();
}

PairLine parse_line(const std::string& json_text, const std::string& where, bool allow_adapter) {
  nlohmann::json obj;
  try {
    obj = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::parse_error& e) {
    if (std::string_view(e.what()).find("UTF-8") != std::string_view::npos) fail("{}: not valid UTF-8 ({})", where, e.what());
    fail("{}: not a JSON object ({})", where, e.what());
  }
  if (!obj.is_object()) fail("{}: expected a JSON object, got {}", where, obj.type_name());
  for (const auto& [key, value] : obj.items())
    if (key != "prompt" && key != "completion" && key != "text" && !(allow_adapter && key == "adapter"))
      fail("{}: unexpected key \"{}\" (expected \"prompt\" and \"completion\", or \"text\"{})", where, key,
           allow_adapter ? ", and optionally \"adapter\"" : "");
  PairLine out;
  const bool is_text = obj.contains("text"), pair = obj.contains("prompt") || obj.contains("completion");
  if (is_text && pair) fail("{}: has both \"text\" and \"prompt\"/\"completion\"; give one or the other", where);
  if (is_text) {
    out.completion = string_value(obj, "text", where);
  } else {
    if (!obj.contains("prompt") || !obj.contains("completion"))
      fail("{}: missing key \"{}\" (expected \"prompt\" and \"completion\", or \"text\")", where,
           obj.contains("prompt") ? "completion" : "prompt");
    out.prompt = string_value(obj, "prompt", where);
    out.completion = string_value(obj, "completion", where);
  }
  if (obj.contains("adapter")) out.adapter = string_value(obj, "adapter", where);
  return out;
}

}  // namespace

bool is_pairs_file(const std::string& path) {
  return path.size() >= 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
}

std::vector<PairLine> read_pairs_file(const std::string& path, bool allow_adapter) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read pairs file {}", path);
  std::vector<PairLine> lines;
  std::string text;
  for (int64_t number = 1; std::getline(in, text); ++number) {
    if (blank(text)) continue;
    lines.push_back(parse_line(text, fmt::format("{} line {}", path, number), allow_adapter));
    lines.back().line = number;
  }
  if (lines.empty()) fail("pairs file {} has no examples", path);
  return lines;
}

Example make_example(std::span<const int32_t> prompt, std::span<const int32_t> completion, int32_t end_id,
                     int64_t max_tokens) {
  Example e;
  e.ids.assign(prompt.begin(), prompt.end());
  e.ids.insert(e.ids.end(), completion.begin(), completion.end());
  e.ids.push_back(end_id);
  e.cut = int64_t(e.ids.size()) > max_tokens;
  if (e.cut) e.ids.resize(size_t(max_tokens));
  e.prompt_tokens = std::min<int64_t>(int64_t(prompt.size()), int64_t(e.ids.size()));
  return e;
}

Examples tokenize_pairs(const std::vector<PairLine>& lines, const models::Tokenizer& tokenizer, int64_t max_tokens,
                        const std::string& path) {
  Examples out;
  out.examples.reserve(lines.size());
  for (const PairLine& l : lines) {
    std::vector<int32_t> prompt, completion;
    try {
      prompt = tokenizer.encode(l.prompt);
      completion = tokenizer.encode(l.completion);
    } catch (const Error& e) {
      fail("{} line {}: {}", path, l.line, e.what());
    }
    out.examples.push_back(make_example(prompt, completion, tokenizer.eos_id(), max_tokens));
    out.truncated += out.examples.back().cut;
  }
  return out;
}

Batch pad_batch(std::span<const Example* const> examples, int32_t pad_id) {
  const int64_t B = int64_t(examples.size());
  int64_t T = 0;
  for (const Example* e : examples) T = std::max(T, int64_t(e->ids.size()));
  Tensor ids = Tensor::full({B, T}, pad_id, DType::i32, kCPU);  // (B, T)
  Tensor labels = Tensor::full({B, T}, -100, DType::i32, kCPU);  // (B, T)
  Tensor mask = Tensor::zeros({B, T}, DType::i32, kCPU);         // (B, T)
  for (int64_t b = 0; b < B; ++b) {
    const Example& e = *examples[size_t(b)];
    for (int64_t t = 0; t < int64_t(e.ids.size()); ++t) {
      ids.data<int32_t>()[b * T + t] = e.ids[size_t(t)];
      labels.data<int32_t>()[b * T + t] = t < e.prompt_tokens ? -100 : e.ids[size_t(t)];
      mask.data<int32_t>()[b * T + t] = 1;
    }
  }
  return {ids, labels, mask};
}

PairsDataset::PairsDataset(Examples examples, double val_fraction, int32_t pad_id, const std::string& name)
    : examples_(std::move(examples.examples)), truncated_(examples.truncated), pad_id_(pad_id), name_(name) {
  if (!(val_fraction >= 0 && val_fraction <= 1)) fail("validation fraction {} is not in [0, 1]", val_fraction);
  split_ = int64_t(double(examples_.size()) * (1 - val_fraction));
}

Batch PairsDataset::train_batch(int64_t B, uint64_t seed, int64_t step) const {
  if (split_ == 0) fail("{}: the training part has no examples", name_);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + uint64_t(step));
  std::uniform_int_distribution<int64_t> pick(0, split_ - 1);
  std::vector<const Example*> rows(static_cast<size_t>(B));
  for (const Example*& r : rows) r = &examples_[size_t(pick(rng))];
  return pad_batch(rows, pad_id_);
}

std::vector<Batch> PairsDataset::val_batches(int64_t B, int64_t max_batches) const {
  if (val_examples() == 0) fail("{}: the held-out part has no examples", name_);
  std::vector<Batch> out;
  std::vector<const Example*> rows;
  for (size_t i = size_t(split_); i < examples_.size() && int64_t(out.size()) < max_batches; ++i) {
    rows.push_back(&examples_[i]);
    if (int64_t(rows.size()) == B || i + 1 == examples_.size()) {
      out.push_back(pad_batch(rows, pad_id_));
      rows.clear();
    }
  }
  return out;
}

}  // namespace mp::tools
