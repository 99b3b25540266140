#include "nn/nf4_weights.h"

#include "engine/error.h"

namespace mp::nn {

namespace {

// The tensor `key` of `file`, checked to be `dtype` with `numel` elements.
Tensor load_checked(const SafetensorsFile& file, const std::string& key, StDType dtype, int64_t numel,
                    const Shape& shape, Tag tag) {
  const TensorInfo& info = file.info(key);
  if (info.dtype != dtype)
    fail("{}: NF4 tensor '{}' is {}, expected {}", file.path(), key, st_dtype_name(info.dtype), st_dtype_name(dtype));
  if (shape_numel(info.shape) != numel)
    fail("{}: NF4 tensor '{}' holds {} elements {}, but a {} matrix needs {}", file.path(), key,
         shape_numel(info.shape), shape_str(info.shape), shape_str(shape), numel);
  Tensor t = file.load(key, dtype == StDType::U8 ? DType::u8 : DType::f32, tag);
  return t.view({numel});
}

}  // namespace

Nf4Tensor load_nf4(const SafetensorsFile& file, const std::string& prefix, const Shape& shape, Tag tag) {
  Nf4Tensor q;
  q.shape = shape;
  const int64_t n = shape_numel(shape);
  q.packed = load_checked(file, prefix + ".packed", StDType::U8, (n + 1) / 2, shape, tag);
  q.absmax = load_checked(file, prefix + ".absmax", StDType::U8, nf4_blocks(n), shape, tag);
  q.nested_absmax = load_checked(file, prefix + ".nested_absmax", StDType::F32, nf4_groups(n), shape, tag);
  q.offset = float(load_checked(file, prefix + ".offset", StDType::F32, 1, shape, Tag::workspace).item());
  return q;
}

void append_nf4(std::vector<std::pair<std::string, Tensor>>& out, const std::string& prefix, const Nf4Tensor& q) {
  out.emplace_back(prefix + ".packed", q.packed);
  out.emplace_back(prefix + ".absmax", q.absmax);
  out.emplace_back(prefix + ".nested_absmax", q.nested_absmax);
  out.emplace_back(prefix + ".offset", Tensor::from_vector(std::vector<float>{q.offset}, {1}, Tag::workspace));
}

}  // namespace mp::nn
