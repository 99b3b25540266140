#include "train/model_shape.h"

#include "engine/error.h"
#include "models/load.h"

namespace mp::train {

models::ModelConfig shaped_config(const std::string& model, const ModelShape& s) {
  if (!s.any()) return models::config_of(model);
  if (s.layers < 0 || s.width < 0 || s.heads < 0) fail("--layers, --width and --heads must be >= 0");
  if (s.layers > 64 || s.width > 4096 || s.heads > 64) fail("--layers/--width/--heads absurdly large");
  if (s.vocab < 0 || s.vocab > 1000000) fail("a vocabulary of {} tokens: expected at most 1000000", s.vocab);
  if (!models::is_builtin_config(model))
    fail("--layers/--width/--heads change a built-in shape; '{}' is not one (a model folder keeps its own)", model);
  models::ModelConfig c = models::builtin_config(model);
  if (s.vocab) {
    if (s.eos_token < 0 || s.eos_token >= s.vocab) fail("end-of-text id {} outside a vocabulary of {}", s.eos_token, s.vocab);
    c.vocab_size = s.vocab;
    c.bos_token_id = c.eos_token_id = s.eos_token;
    if (c.pad_token_id >= s.vocab) c.pad_token_id = -1;
  }
  if (s.layers) c.num_layers = s.layers;
  if (s.heads) c.num_heads = s.heads;
  if (s.width) {
    if (c.word_embed_proj_dim == c.hidden_size) c.word_embed_proj_dim = s.width;  // OPT's 350m keeps its projection
    c.hidden_size = s.width;
    c.ffn_dim = 4 * s.width;
  }
  if (c.hidden_size % c.num_heads != 0)
    fail("--width {} is not divisible by --heads {}", c.hidden_size, c.num_heads);
  return c;
}

}  // namespace mp::train
