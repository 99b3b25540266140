// --layers, --width, --heads: a built-in model's shape with some of its sizes
// changed, for a random model of a chosen shape (`train`, `compare`); and the
// vocabulary size, which `train --tokenizer` sets to the tokenizer's.
#pragma once
#include <string>

#include "models/config.h"

namespace mp::train {

struct ModelShape {
  int layers = 0, width = 0, heads = 0;  // 0: keep the built-in's
  int vocab = 0;                          // 0: keep the built-in's
  int eos_token = -1;                     // with vocab: the begin/end-of-text id (GPT-2 has one for both)
  bool any() const { return layers || width || heads || vocab; }
};

// The config of `model` (a built-in name or an HF folder) with the shape's
// overrides applied; a new width sets the MLP to 4x the width. mp::Error when
// a size is negative or absurd (a vocabulary: over 1,000,000 tokens), the
// width is not divisible by the heads, or `model` is a folder while the shape
// changes something.
models::ModelConfig shaped_config(const std::string& model, const ModelShape& shape);

}  // namespace mp::train
