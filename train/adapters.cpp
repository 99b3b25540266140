#include "train/adapters.h"

#include <algorithm>

#include "engine/error.h"
#include "models/load.h"

namespace mp::train {

AdapterSpec parse_adapter_spec(const std::string& spec) {
  const size_t eq = spec.find('=');
  AdapterSpec a = eq == std::string::npos ? AdapterSpec{"default", spec} : AdapterSpec{spec.substr(0, eq), spec.substr(eq + 1)};
  if (a.name.empty() || a.dir.empty()) fail("--adapter '{}': expected name=folder or folder", spec);
  return a;
}

TrainedModel load_model_with_adapters(const std::string& model, const std::vector<std::string>& specs, uint64_t seed,
                                      models::BaseDType base_dtype, Device device) {
  std::vector<AdapterSpec> adapters;
  for (const std::string& spec : specs) adapters.push_back(parse_adapter_spec(spec));
  TrainedModel m = load_model(model, "", seed, base_dtype, device);
  if (adapters.empty()) return m;
  m.peft = peft::load_peft_model(m.base, adapters[0].dir, adapters[0].name);
  for (size_t i = 1; i < adapters.size(); ++i) {
    for (size_t j = 0; j < i; ++j)
      if (adapters[j].name == adapters[i].name) fail("--adapter: the name '{}' is given twice", adapters[i].name);
    m.peft->load_adapter(adapters[i].dir, adapters[i].name);
  }
  m.peft->set_adapter(adapters[0].name);
  m.module().to(device);  // the adapters were read on the host
  m.module().eval();
  return m;
}

std::vector<std::string> row_adapters(const std::vector<std::string>& names, const TrainedModel& m,
                                      const std::string& where) {
  std::vector<std::string> loaded = m.peft ? m.peft->adapter_names() : std::vector<std::string>{};
  std::vector<std::string> rows;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!names[i].empty() && std::find(loaded.begin(), loaded.end(), names[i]) == loaded.end())
      fail("{}, row {}: adapter '{}' was not loaded (give --adapter {}=folder)", where, i + 1, names[i], names[i]);
    rows.push_back(names[i].empty() ? peft::PeftModel::kBaseName : names[i]);
  }
  return rows;
}

}  // namespace mp::train
