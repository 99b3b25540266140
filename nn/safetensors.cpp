#include "nn/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "nn/atomic_file.h"
#include "nn/json_input.h"

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace mp::nn {

using json = nlohmann::json;

// A header larger than this is taken as a corrupt length, not a real header.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;
// The header is an object of objects of arrays: anything nested deeper is not
// a safetensors header (and is refused while it is parsed).
constexpr int kMaxHeaderDepth = 8;

std::string_view st_dtype_name(StDType t) {
  switch (t) {
    case StDType::F32: return "F32";
    case StDType::BF16: return "BF16";
    case StDType::F16: return "F16";
    case StDType::F64: return "F64";
    case StDType::I32: return "I32";
    case StDType::I64: return "I64";
    case StDType::U8: return "U8";
  }
  return "?";
}

size_t st_dtype_size(StDType t) {
  switch (t) {
    case StDType::F32: return 4;
    case StDType::BF16: return 2;
    case StDType::F16: return 2;
    case StDType::F64: return 8;
    case StDType::I32: return 4;
    case StDType::I64: return 8;
    case StDType::U8: return 1;
  }
  return 0;
}

static bool parse_st_dtype(std::string_view s, StDType& out) {
  for (StDType t : {StDType::F32, StDType::BF16, StDType::F16, StDType::F64, StDType::I32, StDType::I64, StDType::U8}) {
    if (s == st_dtype_name(t)) {
      out = t;
      return true;
    }
  }
  return false;
}

float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    float magnitude = std::ldexp(float(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));  // rebias 15 -> 127
}

// ---------------------------------------------------------------- reading

// A JSON value that must be a non-negative integer below 2^53 (sizes, offsets).
static bool read_size(const json& j, uint64_t& out) {
  if (j.is_number_unsigned()) out = j.get<uint64_t>();
  else if (j.is_number_integer() && j.get<int64_t>() >= 0) out = uint64_t(j.get<int64_t>());
  else return false;
  return out < (uint64_t(1) << 53);
}

// A JSON value for an error message (never throws, even on bad UTF-8).
static std::string show(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

void SafetensorsFile::parse() {
  const std::string& p = path_;
  if (size_ < 8) fail("{}: file is {} bytes, too short for a safetensors file (8-byte header size)", p, size_);
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes_, 8);  // little-endian u64
  if (header_size > kMaxHeaderBytes) fail("{}: header size {} is not plausible (over 100 MB): not a safetensors file?", p, header_size);
  if (header_size > size_ - 8)
    fail("{}: header size {} runs past the end of the file ({} bytes): truncated or not a safetensors file", p,
         header_size, size_);
  data_start_ = 8 + size_t(header_size);
  size_t data_size = size_ - data_start_;

  std::string_view text(reinterpret_cast<const char*>(bytes_ + 8), size_t(header_size));
  const json header = parse_json(text, {p + " header"}, kMaxHeaderDepth);
  if (!header.is_object()) fail("{}: header is JSON but not an object", p);

  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail("{}: '__metadata__' must be an object of strings", p);
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string()) fail("{}: '__metadata__' key '{}' is not a string", p, mkey);
        metadata_[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    if (!value.is_object()) fail("{}: tensor '{}': entry is not an object", p, key);
    TensorInfo info;

    auto dtype = value.find("dtype");
    if (dtype == value.end() || !dtype->is_string()) fail("{}: tensor '{}': missing or non-string 'dtype'", p, key);
    if (!parse_st_dtype(dtype->get_ref<const std::string&>(), info.dtype))
      fail("{}: tensor '{}': unsupported dtype '{}' (supported: F32, BF16, F16, F64, I32, I64)", p, key,
           dtype->get_ref<const std::string&>());

    auto shape = value.find("shape");
    if (shape == value.end() || !shape->is_array()) fail("{}: tensor '{}': missing or non-array 'shape'", p, key);
    uint64_t numel = 1;
    for (const json& d : *shape) {
      uint64_t n = 0;
      if (!read_size(d, n)) fail("{}: tensor '{}': shape {} has a dimension that is not a size >= 0", p, key, show(*shape));
      if (n != 0 && numel > (uint64_t(1) << 53) / n) fail("{}: tensor '{}': shape {} is too large", p, key, show(*shape));
      numel *= n;
      info.shape.push_back(int64_t(n));
    }

    auto offsets = value.find("data_offsets");
    uint64_t begin = 0, end = 0;
    if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 || !read_size((*offsets)[0], begin) ||
        !read_size((*offsets)[1], end))
      fail("{}: tensor '{}': 'data_offsets' must be [begin, end] byte offsets", p, key);
    if (begin > end) fail("{}: tensor '{}': data_offsets [{}, {}] end before they begin", p, key, begin, end);
    if (end > data_size)
      fail("{}: tensor '{}': data_offsets [{}, {}] run past the end of the data ({} bytes): truncated file?", p, key,
           begin, end, data_size);
    uint64_t expected = numel * st_dtype_size(info.dtype);  // < 2^56: no overflow
    if (end - begin != expected)
      fail("{}: tensor '{}': data_offsets [{}, {}] hold {} bytes, but shape {} of {} needs {}", p, key, begin, end,
           end - begin, shape_str(info.shape), st_dtype_name(info.dtype), expected);
    info.begin = size_t(begin);
    info.end = size_t(end);
    tensors_.emplace(key, std::move(info));
  }

  // No two tensors may share bytes.
  std::vector<std::pair<const std::string*, const TensorInfo*>> by_offset;
  for (const auto& [name, info] : tensors_) by_offset.emplace_back(&name, &info);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
    return std::pair(a.second->begin, a.second->end) < std::pair(b.second->begin, b.second->end);
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& prev = *by_offset[i - 1].second;
    const TensorInfo& cur = *by_offset[i].second;
    if (cur.begin < prev.end)
      fail("{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", p, *by_offset[i - 1].first, prev.begin, prev.end,
           *by_offset[i].first, cur.begin, cur.end);
  }
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  f.size_ = size_t(st.st_size);
  if (f.size_ > 0) {
    void* map = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail("{}: cannot map: {}", path, std::strerror(err));
    }
    size_t size = f.size_;
    f.keep_alive_ = std::shared_ptr<const void>(map, [size](const void* m) { ::munmap(const_cast<void*>(m), size); });
    f.bytes_ = static_cast<const uint8_t*>(map);
  }
  ::close(fd);  // the mapping stays valid
  f.parse();
  return f;
}

SafetensorsFile SafetensorsFile::from_bytes(std::string_view bytes, const std::string& name) {
  SafetensorsFile f;
  f.path_ = name;
  auto copy = std::make_shared<std::vector<uint8_t>>(bytes.begin(), bytes.end());
  f.bytes_ = copy->data();
  f.size_ = copy->size();
  f.keep_alive_ = std::move(copy);
  f.parse();
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [name, info] : tensors_) out.push_back(name);
  return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail("{}: no tensor named '{}'", path_, name);
  return it->second;
}

// Source element i as a double (float dtypes only).
static double read_float(const uint8_t* src, StDType t, int64_t i) {
  switch (t) {
    case StDType::F32: { float x; std::memcpy(&x, src + 4 * i, 4); return x; }
    case StDType::BF16: { uint16_t x; std::memcpy(&x, src + 2 * i, 2); return bf16_to_float(bf16{x}); }
    case StDType::F16: { uint16_t x; std::memcpy(&x, src + 2 * i, 2); return half_to_float(x); }
    case StDType::F64: { double x; std::memcpy(&x, src + 8 * i, 8); return x; }
    default: return 0;
  }
}

static bool is_float(StDType t) { return t != StDType::I32 && t != StDType::I64 && t != StDType::U8; }

// The engine dtype that holds `t` exactly, if there is one (then loading is a memcpy).
static bool same_layout(StDType t, DType d) {
  return (t == StDType::F32 && d == DType::f32) || (t == StDType::BF16 && d == DType::bf16) ||
         (t == StDType::I32 && d == DType::i32) || (t == StDType::F64 && d == DType::f64) ||
         (t == StDType::U8 && d == DType::u8);
}

// Convert n elements at src (type t) into the contiguous host buffer dst (type d).
static void convert(const std::string& path, const std::string& name, const uint8_t* src, StDType t, int64_t n,
                    void* dst, DType d) {
  if (same_layout(t, d)) {
    std::memcpy(dst, src, size_t(n) * dtype_size(d));
    return;
  }
  if (is_float(t) && d != DType::i32 && d != DType::u8) {
    for (int64_t i = 0; i < n; ++i) {
      double x = read_float(src, t, i);
      switch (d) {
        case DType::f32: static_cast<float*>(dst)[i] = float(x); break;
        case DType::bf16: static_cast<bf16*>(dst)[i] = float_to_bf16(float(x)); break;
        case DType::f64: static_cast<double*>(dst)[i] = x; break;
        case DType::i32:
        case DType::u8: break;
      }
    }
    return;
  }
  if (t == StDType::I64 && d == DType::i32) {
    for (int64_t i = 0; i < n; ++i) {
      int64_t x;
      std::memcpy(&x, src + 8 * i, 8);
      if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max())
        fail("{}: tensor '{}': I64 value {} at element {} does not fit in i32", path, name, x, i);
      static_cast<int32_t*>(dst)[i] = int32_t(x);
    }
    return;
  }
  fail("{}: tensor '{}' is {}, which cannot be loaded as {}", path, name, st_dtype_name(t), dtype_name(d));
}

Tensor SafetensorsFile::load(const std::string& name, DType want, Tag tag, Device device) const {
  const TensorInfo& i = info(name);
  Tensor host = Tensor::empty(i.shape, want, kCPU, device.is_cpu() ? tag : Tag::workspace);
  convert(path_, name, bytes_ + data_start_ + i.begin, i.dtype, host.numel(), host.raw(), want);
  if (device.is_cpu()) return host;
  Tensor out = Tensor::empty(i.shape, want, device, tag);
  out.copy_from(host);
  return out;
}

void SafetensorsFile::load_into(const std::string& name, const Tensor& dst) const {
  const TensorInfo& i = info(name);
  if (dst.shape() != i.shape)
    fail("{}: tensor '{}' has shape {}, the destination {}", path_, name, shape_str(i.shape), shape_str(dst.shape()));
  if (dst.device().is_cpu() && dst.is_contiguous()) {
    convert(path_, name, bytes_ + data_start_ + i.begin, i.dtype, dst.numel(), dst.raw(), dst.dtype());
    return;
  }
  Tensor(dst).copy_from(load(name, dst.dtype(), Tag::workspace));
}

// ---------------------------------------------------------------- writing

static std::string_view st_dtype_of(DType d, const std::string& name) {
  switch (d) {
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
    case DType::f64: return "F64";
    case DType::u8: return "U8";
  }
  fail("safetensors: tensor '{}' has an unknown dtype", name);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<const std::pair<std::string, Tensor>*> sorted;
  for (const auto& nt : tensors) {
    if (!nt.second.defined()) fail("{}: tensor '{}' is undefined", path, nt.first);
    if (nt.first == "__metadata__") fail("{}: '__metadata__' is reserved and cannot name a tensor", path);
    sorted.push_back(&nt);
  }
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->first == sorted[i - 1]->first) fail("{}: tensor name '{}' appears twice", path, sorted[i]->first);

  // The header: metadata first, then tensors in name order, data packed in that order.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto* nt : sorted) {
    const Tensor& t = nt->second;
    header[nt->first] = {{"dtype", std::string(st_dtype_of(t.dtype(), nt->first))},
                         {"shape", t.shape()},
                         {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text;
  try {
    text = header.dump();  // compact; throws on names that are not valid UTF-8
  } catch (const nlohmann::json::exception& e) {
    fail("{}: cannot write the header: {}", path, e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  write_file_atomically(path, [&](std::FILE* f) {
    uint64_t n = text.size();
    write_bytes(f, &n, 8, path);
    write_bytes(f, text.data(), text.size(), path);
    for (const auto* nt : sorted) {
      const Tensor& t = nt->second;
      if (t.device().is_cpu() && t.is_contiguous()) {
        write_bytes(f, t.raw(), t.nbytes(), path);
      } else {
        Tensor host = Tensor::empty(t.shape(), t.dtype(), kCPU, Tag::workspace);
        host.copy_from(t);
        write_bytes(f, host.raw(), host.nbytes(), path);
      }
    }
  });
}

}  // namespace mp::nn
