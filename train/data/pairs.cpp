#include "train/data/pairs.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/error.h"
#include "nn/json_input.h"
#include "train/data/line_reader.h"

namespace mp::train {

namespace {

bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

PairLine parse_line(const std::string& json_text, const nn::JsonSource& source, bool allow_adapter,
                    bool need_completion) {
  const nlohmann::json obj = nn::parse_json(json_text, source);
  if (!obj.is_object()) fail("{}: expected a JSON object, got {}", source.at(), obj.type_name());
  for (const auto& [key, value] : obj.items())
    if (key != "prompt" && key != "completion" && key != "text" && !(allow_adapter && key == "adapter"))
      fail("{}: unexpected key \"{}\" (expected \"prompt\" and \"completion\", or \"text\"{})", source.at(),
           nn::printable(key), allow_adapter ? ", and optionally \"adapter\"" : "");
  PairLine out;
  const bool is_text = obj.contains("text"), pair = obj.contains("prompt") || obj.contains("completion");
  if (is_text && pair) fail("{}: has both \"text\" and \"prompt\"/\"completion\"; give one or the other", source.at());
  if (is_text) {
    out.completion = nn::json_value<std::string>(obj, "text", source);
  } else {
    if (!obj.contains("prompt") || (need_completion && !obj.contains("completion")))
      fail("{}: missing key \"{}\" (expected \"prompt\" and \"completion\", or \"text\")", source.at(),
           obj.contains("prompt") ? "completion" : "prompt");
    out.prompt = nn::json_value<std::string>(obj, "prompt", source);
    if (obj.contains("completion")) out.completion = nn::json_value<std::string>(obj, "completion", source);
  }
  if (obj.contains("adapter")) out.adapter = nn::json_value<std::string>(obj, "adapter", source);
  return out;
}

}  // namespace

bool is_pairs_file(const std::string& path) {
  return path.size() >= 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
}

std::vector<PairLine> read_pairs(std::istream& in, const std::string& name, bool allow_adapter, bool need_completion) {
  LineReader reader(in, name);
  std::vector<PairLine> lines;
  for (std::string text; reader.next(text);) {
    if (blank(text)) continue;
    lines.push_back(parse_line(text, {name, reader.number()}, allow_adapter, need_completion));
    lines.back().line = reader.number();
  }
  if (lines.empty()) fail("pairs file {} has no examples", name);
  return lines;
}

std::vector<PairLine> read_pairs_file(const std::string& path, bool allow_adapter, bool need_completion) {
  std::ifstream in = open_input_file(path, "pairs file");
  return read_pairs(in, path, allow_adapter, need_completion);
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

void require_scored_tokens(std::span<const Example> part, const std::string& name, std::string_view part_name) {
  int64_t cut_away = 0, empty = 0, seq = 0;
  for (const Example& e : part) {
    if (e.scored_tokens() > 0) return;
    if (e.cut) ++cut_away, seq = int64_t(e.ids.size());
    else ++empty;  // only the end token: no prompt, no completion
  }
  std::string why = fmt::format("of its {} example{}", part.size(), part.size() == 1 ? "" : "s");
  if (cut_away > 0)
    why += fmt::format(", {} {} a prompt that fills all --seq {} tokens, so {} completion is cut away", cut_away,
                       cut_away == 1 ? "has" : "have", seq, cut_away == 1 ? "its" : "their");
  if (empty > 0) why += fmt::format("{} {} {} empty", cut_away > 0 ? ";" : ",", empty, empty == 1 ? "is" : "are");
  fail("{}: nothing to learn: no example of the {} has a token to score ({})", name, part_name, why);
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
    out.examples.back().adapter = l.adapter;
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

// Rows of at most T tokens the examples fill in order: the row each one goes in.
static std::vector<int64_t> rows_of(std::span<const Example* const> examples, int64_t T) {
  std::vector<int64_t> row;
  int64_t r = 0, used = 0;
  for (const Example* e : examples) {
    const int64_t n = int64_t(e->ids.size());
    if (used > 0 && used + n > T) {
      ++r;
      used = 0;
    }
    row.push_back(r);
    used += n;
  }
  return row;
}

Batch pack_batch(std::span<const Example* const> examples, int64_t T, int32_t pad_id) {
  const std::vector<int64_t> row = rows_of(examples, T);
  const int64_t B = row.empty() ? 0 : row.back() + 1;
  Tensor ids = Tensor::full({B, T}, pad_id, DType::i32, kCPU);       // (B, T)
  Tensor labels = Tensor::full({B, T}, -100, DType::i32, kCPU);      // (B, T)
  Tensor mask = Tensor::zeros({B, T}, DType::i32, kCPU);             // (B, T)
  Tensor positions = Tensor::zeros({B, T}, DType::i32, kCPU);        // (B, T)
  Tensor segments = Tensor::full({B, T}, -1, DType::i32, kCPU);      // (B, T)
  int64_t at = 0;       // where the next example starts in its row
  int32_t segment = 0;  // and its segment there
  for (size_t i = 0; i < examples.size(); ++i) {
    if (i > 0 && row[i] != row[i - 1]) at = 0, segment = 0;
    const Example& e = *examples[i];
    for (int64_t t = 0; t < int64_t(e.ids.size()); ++t) {
      const int64_t k = row[i] * T + at + t;
      ids.data<int32_t>()[k] = e.ids[size_t(t)];
      labels.data<int32_t>()[k] = t < std::max<int64_t>(e.prompt_tokens, 1) ? -100 : e.ids[size_t(t)];
      mask.data<int32_t>()[k] = 1;
      positions.data<int32_t>()[k] = int32_t(t);
      segments.data<int32_t>()[k] = segment;
    }
    at += int64_t(e.ids.size());
    ++segment;
  }
  Batch batch(ids, labels, mask);
  batch.position_ids = positions;
  batch.segment_ids = segments;
  return batch;
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
  std::vector<const Example*> rows;
  if (packed_T_ == 0) {
    for (int64_t r = 0; r < B; ++r) rows.push_back(&examples_[size_t(pick(rng))]);
    return pad_batch(rows, pad_id_);
  }
  for (;;) {  // draw until the next example would need row B + 1
    rows.push_back(&examples_[size_t(pick(rng))]);
    if (rows_of(rows, packed_T_).back() == B) break;
  }
  rows.pop_back();
  return pack_batch(rows, packed_T_, pad_id_);
}

std::vector<Batch> PairsDataset::val_batches(int64_t B, int64_t max_batches) const {
  if (val_examples() == 0) fail("{}: the held-out part has no examples", name_);
  require_scored_tokens(held_out_part(), name_, "held-out part");
  std::vector<const Example*> held_out;
  for (size_t i = size_t(split_); i < examples_.size(); ++i) held_out.push_back(&examples_[i]);
  std::vector<Batch> out;
  for (size_t first = 0; first < held_out.size() && int64_t(out.size()) < max_batches;) {
    const std::span<const Example* const> rest(held_out.data() + first, held_out.size() - first);
    if (packed_T_ == 0) {
      const std::span<const Example* const> part = rest.first(std::min(rest.size(), size_t(B)));
      out.push_back(pad_batch(part, pad_id_));
      first += part.size();
    } else {  // as many examples as fill B rows
      const std::vector<int64_t> row = rows_of(rest, packed_T_);
      const size_t n = size_t(std::lower_bound(row.begin(), row.end(), B) - row.begin());
      out.push_back(pack_batch(rest.first(n), packed_T_, pad_id_));
      first += n;
    }
  }
  return out;
}

}  // namespace mp::train
