// NF4 weights (engine/nf4.h) in safetensors files: one weight is four tensors
// under one prefix, the names reference/ stores bitsandbytes' results
// under:
//
//   <prefix>.packed         U8  ((numel + 1) / 2)   the codes, two per byte
//   <prefix>.absmax         U8  (blocks of 64)       the quantized absmax
//   <prefix>.nested_absmax  F32 (groups of 256)
//   <prefix>.offset         F32 (1)
//
// Reading checks every size against the matrix's shape before a byte is used:
// a file claiming NF4 data of the wrong size is an mp::Error naming the file,
// the tensor and both sizes.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/nf4.h"
#include "nn/safetensors.h"

namespace mp::nn {

Nf4Tensor load_nf4(const SafetensorsFile& file, const std::string& prefix, const Shape& shape, Tag tag = Tag::weights);

// Append q's four tensors under `prefix` (for save_safetensors).
void append_nf4(std::vector<std::pair<std::string, Tensor>>& out, const std::string& prefix, const Nf4Tensor& q);

}  // namespace mp::nn
