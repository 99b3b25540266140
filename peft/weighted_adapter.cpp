#include "peft/weighted_adapter.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "engine/error.h"
#include "peft/lora.h"
#include "peft/svd.h"

namespace mp::peft {

namespace {

// One input adapter as it wraps one layer.
struct Part {
  const LoraWeights* lora;
  double weight;
};

// A layer's new A (r, in) and B (out, r), row-major.
struct Factors {
  std::vector<double> a, b;
};

std::vector<double> values(const Variable& v) {
  const std::vector<float> f = v.value().to_floats();
  return {f.begin(), f.end()};
}

Factors linear_factors(const std::vector<Part>& parts, int64_t r, int64_t in, int64_t out) {
  Factors f{std::vector<double>(size_t(r * in)), std::vector<double>(size_t(out * r))};
  for (const Part& p : parts) {
    const double ws = p.weight * p.lora->scaling;
    const double wb = std::sqrt(std::abs(ws)), wa = ws >= 0 ? wb : -wb;  // the sign on A only
    const std::vector<double> a = values(p.lora->A), b = values(p.lora->B);
    for (size_t i = 0; i < a.size(); ++i) f.a[i] += wa * a[i];
    for (size_t i = 0; i < b.size(); ++i) f.b[i] += wb * b[i];
  }
  return f;
}

Factors cat_factors(const std::vector<Part>& parts, int64_t r, int64_t in, int64_t out) {
  Factors f{std::vector<double>(size_t(r * in)), std::vector<double>(size_t(out * r))};
  int64_t row = 0;  // the first rank row of the next part
  for (const Part& p : parts) {
    const double ws = p.weight * p.lora->scaling;
    const int64_t ri = p.lora->r;
    const std::vector<double> a = values(p.lora->A), b = values(p.lora->B);  // (ri, in), (out, ri)
    for (int64_t i = 0; i < ri * in; ++i) f.a[size_t(row * in + i)] = ws * a[size_t(i)];
    for (int64_t o = 0; o < out; ++o)
      for (int64_t j = 0; j < ri; ++j) f.b[size_t(o * r + row + j)] = b[size_t(o * ri + j)];
    row += ri;
  }
  return f;
}

Factors svd_factors(const std::vector<Part>& parts, int64_t r, int64_t in, int64_t out, const std::string& layer) {
  if (r > std::min(in, out))
    fail("add_weighted_adapter: svd_rank {} is above the rank of {} ({} x {})", r, layer, out, in);
  std::vector<double> delta(size_t(out * in));  // (out, in)
  for (const Part& p : parts) {
    const double ws = p.weight * p.lora->scaling;
    const int64_t ri = p.lora->r;
    const std::vector<double> a = values(p.lora->A), b = values(p.lora->B);  // (ri, in), (out, ri)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t j = 0; j < ri; ++j) {
        const double bj = ws * b[size_t(o * ri + j)];
        for (int64_t i = 0; i < in; ++i) delta[size_t(o * in + i)] += bj * a[size_t(j * in + i)];
      }
  }
  const Svd d = svd(delta, out, in);
  Factors f{std::vector<double>(d.vh.begin(), d.vh.begin() + r * in), std::vector<double>(size_t(out * r))};
  for (int64_t o = 0; o < out; ++o)
    for (int64_t j = 0; j < r; ++j) f.b[size_t(o * r + j)] = d.u[size_t(o * d.k + j)] * d.s[size_t(j)];
  return f;
}

void store(const Variable& dst, const std::vector<double>& v) {
  Variable target = dst;  // shares the parameter's tensor
  target.value().copy_from(Tensor::from_vector(v, dst.value().shape()));
}

// The inputs' configs, checked; mp::Error naming the offending adapter.
std::vector<const LoraConfig*> lora_configs(const PeftModel& model, const std::vector<std::string>& adapters) {
  std::vector<const LoraConfig*> out;
  std::set<std::string> seen;
  for (const std::string& name : adapters) {
    const std::vector<std::string> have = model.adapter_names();
    if (std::find(have.begin(), have.end(), name) == have.end()) fail("add_weighted_adapter: no adapter '{}'", name);
    if (!seen.insert(name).second) fail("add_weighted_adapter: adapter '{}' is given twice", name);
    const PeftConfig& c = model.peft_config(name);
    if (!c.as_lora())
      fail("add_weighted_adapter: adapter '{}' is {}, only LoRA adapters can be combined", name,
           peft_type_name(c.peft_type()));
    if (c.as_lora()->use_dora)
      fail("add_weighted_adapter: adapter '{}' uses DoRA; combining DoRA adapters is not supported", name);
    const PeftConfig& first = model.peft_config(adapters[0]);
    if (!c.base_model_name_or_path.empty() && !first.base_model_name_or_path.empty() &&
        c.base_model_name_or_path != first.base_model_name_or_path)
      fail("add_weighted_adapter: adapter '{}' was made for base model '{}', '{}' for '{}'", name,
           c.base_model_name_or_path, adapters[0], first.base_model_name_or_path);
    out.push_back(c.as_lora());
  }
  return out;
}

// PEFT's new rank: linear the common r, cat the sum, svd svd_rank or the largest.
int new_rank(const std::vector<const LoraConfig*>& configs, const std::vector<std::string>& adapters,
             CombinationType type, int svd_rank) {
  int total = 0, largest = 0;
  for (const LoraConfig* c : configs) total += c->r, largest = std::max(largest, c->r);
  switch (type) {
    case CombinationType::linear:
      for (size_t i = 1; i < configs.size(); ++i)
        if (configs[i]->r != configs[0]->r)
          fail("add_weighted_adapter: linear needs adapters of one r; '{}' has r {}, '{}' has r {} (use cat or svd)",
               adapters[0], configs[0]->r, adapters[i], configs[i]->r);
      return configs[0]->r;
    case CombinationType::cat: return total;
    case CombinationType::svd:
      if (svd_rank > total)
        fail("add_weighted_adapter: svd_rank {} is above the inputs' total rank {}", svd_rank, total);
      return svd_rank > 0 ? svd_rank : largest;
  }
  return 0;
}

// The first config with the new rank and the union of the targets.
PeftConfig combined_config(const PeftModel& model, const std::vector<std::string>& adapters,
                           const std::vector<const LoraConfig*>& configs, int rank) {
  PeftConfig out = model.peft_config(adapters[0]);
  LoraConfig& c = *out.as_lora();
  c.r = rank;
  c.lora_alpha = float(rank);
  std::set<std::string> targets;
  std::string regex;
  for (size_t i = 0; i < configs.size(); ++i) {
    if (configs[i]->target_modules_regex.empty() != configs[0]->target_modules_regex.empty())
      fail("add_weighted_adapter: '{}' and '{}' give target_modules as a list and as a regex; PEFT cannot combine them",
           adapters[0], adapters[i]);
    targets.insert(configs[i]->target_modules.begin(), configs[i]->target_modules.end());
    regex += (i ? "|(" : "(") + configs[i]->target_modules_regex + ")";
  }
  c.target_modules.assign(targets.begin(), targets.end());
  c.target_modules_regex = configs[0]->target_modules_regex.empty() ? "" : regex;
  return out;
}

// Each layer of the new adapter: its A and B from the inputs that wrap it.
void fill_layers(PeftModel& model, const std::vector<std::string>& adapters, const std::vector<double>& weights,
                 const std::string& adapter_name, CombinationType type, int rank) {
  for (const auto& [path, layer] : model.lora_layers()) {
    auto lora = std::dynamic_pointer_cast<LoraLinear>(layer->adapter());
    if (!lora || !lora->has_adapter(adapter_name)) continue;
    std::vector<Part> parts;
    for (size_t i = 0; i < adapters.size(); ++i)
      if (lora->has_adapter(adapters[i])) parts.push_back({&lora->weights(adapters[i]), weights[i]});
    const LoraWeights& target = lora->weights(adapter_name);
    const int64_t in = target.A.value().size(1), out = target.B.value().size(0);
    const Factors f = type == CombinationType::linear ? linear_factors(parts, rank, in, out)
                      : type == CombinationType::cat  ? cat_factors(parts, rank, in, out)
                                                      : svd_factors(parts, rank, in, out, path);
    store(target.A, f.a);
    store(target.B, f.b);
  }
}

}  // namespace

std::string_view combination_type_name(CombinationType t) {
  switch (t) {
    case CombinationType::linear: return "linear";
    case CombinationType::cat: return "cat";
    case CombinationType::svd: return "svd";
  }
  return "?";
}

CombinationType parse_combination_type(std::string_view name) {
  for (CombinationType t : {CombinationType::linear, CombinationType::cat, CombinationType::svd})
    if (name == combination_type_name(t)) return t;
  fail("unknown combination type '{}' (expected linear, cat or svd)", name);
}

void add_weighted_adapter(PeftModel& model, const std::vector<std::string>& adapters,
                          const std::vector<double>& weights, const std::string& adapter_name,
                          CombinationType combination_type, int svd_rank) {
  if (adapters.empty()) fail("add_weighted_adapter: no adapters to combine");
  if (weights.size() != adapters.size())
    fail("add_weighted_adapter: {} weights for {} adapters", weights.size(), adapters.size());
  const std::vector<std::string> have = model.adapter_names();
  if (std::find(have.begin(), have.end(), adapter_name) != have.end())
    fail("add_weighted_adapter: an adapter named '{}' already exists", adapter_name);
  if (svd_rank < 0 || (svd_rank > 0 && combination_type != CombinationType::svd))
    fail("add_weighted_adapter: svd_rank {} is only for the svd type (a positive rank)", svd_rank);
  const std::vector<const LoraConfig*> configs = lora_configs(model, adapters);
  const CombinationType type = adapters.size() == 1 ? CombinationType::linear : combination_type;
  const int rank = new_rank(configs, adapters, type, svd_rank);
  model.add_adapter(adapter_name, combined_config(model, adapters, configs, rank));

  try {
    fill_layers(model, adapters, weights, adapter_name, type, rank);
  } catch (...) {
    model.delete_adapter(adapter_name);
    throw;
  }
}

}  // namespace mp::peft
