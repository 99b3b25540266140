// --tokenizer: which tokenizer train, eval and generate use. A model folder
// may carry its own (HF saves vocab.json + merges.txt beside config.json, and
// `train` saves the one it used beside a fully fine-tuned model); GPT-2's
// (train/data/paths.h) is the default.
#pragma once
#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>

#include "engine/error.h"
#include "models/tokenizer.h"
#include "train/data/paths.h"

namespace mp::cli {

inline void add_tokenizer_option(CLI::App* cmd, std::string& dir) {
  cmd->add_option("--tokenizer", dir,
                  "folder with vocab.json + merges.txt (or encoder.json + vocab.bpe); default: the --model folder's "
                  "own, else GPT-2's");
}

// The folder to load the tokenizer from: `given`, else the model folder's own
// files, else "" (GPT-2's default).
inline std::string tokenizer_dir_for(const std::string& model, const std::string& given) {
  if (!given.empty()) return given;
  if (std::filesystem::is_directory(model) && models::Tokenizer::files_in(model)) return model;
  return "";
}

inline models::Tokenizer load_tokenizer(const std::string& dir) {
  return models::Tokenizer::from_dir(dir.empty() ? train::default_tokenizer_dir() : dir);
}

// mp::Error when a chosen tokenizer (`dir` not "") has ids the model has no
// embedding for. GPT-2's default is not checked here: small test models use it
// with texts whose ids they have (the embedding rejects any id out of range).
inline void check_tokenizer_fits(const models::Tokenizer& tok, const std::string& dir, int model_vocab) {
  if (!dir.empty() && tok.vocab_size() > model_vocab)
    fail("the tokenizer in {} has {} tokens, more than the model's vocabulary of {}", dir, tok.vocab_size(), model_vocab);
}

// eval's and generate's tokenizer for a loaded model: --tokenizer `given`,
// else the `model` folder's own, else GPT-2's; checked against `model_vocab`.
inline models::Tokenizer tokenizer_for(const std::string& model, const std::string& given, int model_vocab) {
  const std::string dir = tokenizer_dir_for(model, given);
  models::Tokenizer tok = load_tokenizer(dir);
  check_tokenizer_fits(tok, dir, model_vocab);
  return tok;
}

}  // namespace mp::cli
