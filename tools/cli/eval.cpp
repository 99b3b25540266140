// minipeft eval: loss and perplexity of a model (with an adapter) on a text file.
#include <cmath>
#include <fmt/format.h>

#include "engine/error.h"
#include "tools/cli/command.h"
#include "tools/cli/model_options.h"
#include "tools/paths.h"
#include "tools/trainer.h"

namespace mp::cli {

void add_eval(CLI::App& app) {
  struct Options {
    ModelChoice m;
    std::string data = data_dir() + "/tinyshakespeare/input.txt";
    double fraction = 0.1;
    int64_t batch = 4, seq = 64, batches = 16;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("eval", "loss and perplexity on the held-out tail of a text file");
  add_model_options(cmd, o->m);
  cmd->add_option("--data", o->data, "UTF-8 text file")->capture_default_str();
  cmd->add_option("--fraction", o->fraction, "evaluate on this tail of the file (1: all of it)")->capture_default_str();
  cmd->add_option("--batch", o->batch, "sequences per batch")->capture_default_str();
  cmd->add_option("--seq", o->seq, "tokens per sequence")->capture_default_str();
  cmd->add_option("--batches", o->batches, "at most this many batches")->capture_default_str();
  cmd->callback([o] {
    if (o->batch <= 0 || o->seq <= 0 || o->batches <= 0) fail("--batch, --seq and --batches must be positive");
    models::Tokenizer tok = models::Tokenizer::from_dir(default_tokenizer_dir());
    tools::TrainedModel m = tools::load_model(o->m.model, o->m.adapter, o->m.seed, o->m.base_dtype, o->m.base_nf4);
    if (o->seq > m.base->max_positions()) fail("--seq {} exceeds the model's {} positions", o->seq, m.base->max_positions());
    tools::TokenDataset data(tools::load_token_ids(o->data, tok), o->fraction, o->data);
    std::vector<Tensor> batches = data.val_batches(o->batch, o->seq, o->batches);
    double loss = tools::evaluate(m, batches);
    fmt::print("loss {:.4f}  perplexity {:.2f}  ({} batches of {}x{} tokens)\n", loss, std::exp(loss), batches.size(),
               o->batch, o->seq);
  });
}

}  // namespace mp::cli
