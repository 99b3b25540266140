// safetensors (https://github.com/huggingface/safetensors), the format of
// Hugging Face checkpoints:
//
//   [8 bytes: N, little-endian u64][N bytes: JSON header][raw tensor data]
//
// The header maps each tensor name to {"dtype": "F32", "shape": [2, 3],
// "data_offsets": [begin, end]} (byte offsets into the data that follows the
// header), plus an optional "__metadata__": {string: string}.
//
// The reader maps the file (mmap) and validates everything before a single
// tensor is read: any malformed file is an mp::Error naming the file and the
// key, never a crash (tests/nn/fuzz_safetensors.cpp feeds it random bytes).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace mp::nn {

// Element types a file may hold. F16 and F64 are widened or narrowed on load;
// I64 is narrowed to i32 when every value fits; U8 (raw bytes: NF4 codes and
// quantized scales) loads only as u8.
enum class StDType : uint8_t { F32, BF16, F16, F64, I32, I64, U8 };
std::string_view st_dtype_name(StDType t);  // "F32", ...
size_t st_dtype_size(StDType t);

struct TensorInfo {
  StDType dtype;
  Shape shape;
  size_t begin = 0, end = 0;  // byte range within the data section
};

class SafetensorsFile {
 public:
  // Map and validate `path`. mp::Error names the file (and the key) on any problem.
  static SafetensorsFile open(const std::string& path);
  // Validate bytes held in memory (a copy is kept); `name` is used in errors.
  static SafetensorsFile from_bytes(std::string_view bytes, const std::string& name = "<memory>");

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // mp::Error if there is no such tensor
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // A new tensor with the stored values as `want` (float types convert among
  // themselves; I32/I64 load only as i32), on `device`, under `tag`.
  Tensor load(const std::string& name, DType want = DType::f32, Tag tag = Tag::weights, Device device = kCPU) const;
  // Copy the stored values into dst (same shape; dst's dtype and device),
  // without a temporary when dst is a contiguous CPU tensor.
  void load_into(const std::string& name, const Tensor& dst) const;

 private:
  SafetensorsFile() = default;
  void parse();  // fills tensors_ and metadata_ from bytes_, or throws
  std::string path_;
  std::shared_ptr<const void> keep_alive_;  // owns the mapping or the copy
  const uint8_t* bytes_ = nullptr;
  size_t size_ = 0;
  size_t data_start_ = 0;  // 8 + header size
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Write tensors (f32, bf16, i32, f64 or u8, any device and strides) to `path`
// atomically (nn/atomic_file.h). Tensors are stored sorted by name; the
// header is padded with spaces to a multiple of 8 bytes, as the reference
// implementation does. Duplicate names are an mp::Error.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// IEEE half precision -> float (exact; subnormals, infinities and NaN included).
float half_to_float(uint16_t h);

}  // namespace mp::nn
