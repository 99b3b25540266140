// minipeft tokenize: text (stdin or --text) -> one JSON array of ids;
// --decode: a JSON array of ids -> text.
#include <climits>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "nn/json_input.h"
#include "models/tokenizer.h"
#include "cli/command.h"
#include "train/data/paths.h"

namespace mp::cli {

void add_tokenize(CLI::App& app) {
  struct Options {
    std::string text, tokenizer_dir = train::default_tokenizer_dir();
    bool has_text = false, decode = false, bos = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("tokenize", "GPT-2 BPE: text from stdin (or --text) to a JSON array of ids");
  cmd->add_option("--text", opt->text, "the text (default: read stdin)");
  cmd->add_flag("--decode", opt->decode, "read a JSON array of ids and print the text");
  cmd->add_flag("--bos", opt->bos, "prepend </s> (id 2) as OPT's tokenizer does");
  cmd->add_option("--tokenizer", opt->tokenizer_dir, "folder with encoder.json + vocab.bpe or vocab.json + merges.txt");
  cmd->callback([opt, cmd] {
    std::string input = cmd->count("--text") ? opt->text
                                            : std::string(std::istreambuf_iterator<char>(std::cin), {});
    models::Tokenizer tok = models::Tokenizer::from_dir(opt->tokenizer_dir);
    if (opt->decode) {
      const nlohmann::json ids = nn::parse_json(input, {"--decode input"});
      if (!ids.is_array()) fail("--decode expects a JSON array of token ids");
      std::vector<int32_t> v;
      for (const auto& x : ids) {
        const bool id = x.is_number_unsigned() ? x.get<uint64_t>() <= uint64_t(INT32_MAX)
                                               : x.is_number_integer() && x.get<int64_t>() >= INT32_MIN;
        if (!id) fail("--decode: {} is not a token id", nn::printable(x.dump()));
        v.push_back(int32_t(x.get<int64_t>()));
      }
      std::cout << tok.decode(v);
      return;
    }
    std::vector<int32_t> ids = opt->bos ? tok.encode_with_bos(input) : tok.encode(input);
    std::cout << nlohmann::json(ids).dump() << "\n";
  });
}

}  // namespace mp::cli
