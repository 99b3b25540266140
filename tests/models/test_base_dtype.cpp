// The base's storage choice (models/base_dtype.h): the names --base-dtype
// takes (README), the refusal of any other, and the dtype each is made in.
#include <doctest/doctest.h>

#include <string>

#include "engine/error.h"
#include "models/base_dtype.h"

using namespace mp;
using models::BaseDType;

TEST_CASE("base dtype: each name parses back to its choice") {
  CHECK(models::base_dtype_name(BaseDType::f32) == "f32");
  CHECK(models::base_dtype_name(BaseDType::bf16) == "bf16");
  CHECK(models::base_dtype_name(BaseDType::nf4) == "nf4");
  CHECK(models::parse_base_dtype("f32") == BaseDType::f32);
  CHECK(models::parse_base_dtype("bf16") == BaseDType::bf16);
  CHECK(models::parse_base_dtype("nf4") == BaseDType::nf4);
}

TEST_CASE("base dtype: another name is refused, naming it") {
  for (const char* bad : {"f16", "", "NF4", "nf4 ", "i32"}) {
    const std::string quoted = fmt::format("'{}'", bad);
    CHECK_THROWS_WITH_AS(models::parse_base_dtype(bad), doctest::Contains(quoted.c_str()), Error);
  }
}

TEST_CASE("base dtype: a bf16 base is made in bf16; an nf4 base in f32, then quantized") {
  CHECK(models::weight_dtype(BaseDType::f32) == DType::f32);
  CHECK(models::weight_dtype(BaseDType::bf16) == DType::bf16);
  CHECK(models::weight_dtype(BaseDType::nf4) == DType::f32);
}
