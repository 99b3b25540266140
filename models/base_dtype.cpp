#include "models/base_dtype.h"

#include "engine/error.h"

namespace mp::models {

std::string_view base_dtype_name(BaseDType base) {
  switch (base) {
    case BaseDType::f32: return "f32";
    case BaseDType::bf16: return "bf16";
    case BaseDType::nf4: return "nf4";
  }
  return "?";
}

BaseDType parse_base_dtype(std::string_view name) {
  for (BaseDType base : kBaseDTypes)
    if (base_dtype_name(base) == name) return base;
  fail("base dtype '{}': expected f32, bf16 or nf4", name);
}

}  // namespace mp::models
