// minipeft eval: loss and perplexity of a model (with an adapter) on a text
// file; on a pairs file (.jsonl) the loss over completion tokens and exact match.
#include <cmath>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "cli/command.h"
#include "train/adapters.h"
#include "cli/model_options.h"
#include "cli/tokenizer_option.h"
#include "train/pairs_eval.h"
#include "train/data/paths.h"
#include "train/trainer.h"

namespace mp::cli {

namespace {

struct Options {
  ModelChoice m;
  std::string tokenizer;  // "" : the model folder's own, else GPT-2's (cli/tokenizer_option.h)
  std::string data = train::data_dir() + "/tinyshakespeare/input.txt";
  double fraction = 0.1;
  int64_t batch = 4, seq = 64, batches = 16;
  bool seq_given = false, json = false;
  bool mixed() const {  // several adapters, or one named: rows of a pairs file name theirs
    return m.adapters.size() > 1 || (m.adapters.size() == 1 && m.adapters[0].find('=') != std::string::npos);
  }
};

void eval_text(const Options& o, const train::TrainedModel& m, const models::Tokenizer& tok) {
  if (o.seq > m.base->max_positions()) fail("--seq {} exceeds the model's {} positions", o.seq, m.base->max_positions());
  train::TokenDataset data(train::load_token_ids(o.data, tok), o.fraction, o.data);
  std::vector<Tensor> batches = data.val_batches(o.batch, o.seq, o.batches);
  for (Tensor& b : batches) b = b.to(m.device());
  double loss = train::evaluate(m, batches);
  if (o.json) {
    fmt::print("{}\n", nlohmann::json{{"loss", loss}, {"perplexity", std::exp(loss)}, {"batches", batches.size()},
                                      {"batch", o.batch}, {"seq", o.seq}}.dump());
    return;
  }
  fmt::print("loss {:.4f}  perplexity {:.2f}  ({} batches of {}x{} tokens)\n", loss, std::exp(loss), batches.size(),
             o.batch, o.seq);
}

void eval_pairs(const Options& o, const train::TrainedModel& m, const models::Tokenizer& tok) {
  // Without --seq, examples may be as long as the model's positions (less a prompt method's virtual tokens).
  int64_t room = m.base->max_positions();
  if (m.peft) room -= m.peft->peft_config().num_virtual_tokens();
  const int64_t seq = o.seq_given ? o.seq : room;
  if (seq > room) fail("--seq {} exceeds the {} positions the model has for a sequence", seq, room);
  train::PairsDataset data(train::tokenize_pairs(train::read_pairs_file(o.data, o.mixed()), tok, seq, o.data),
                           o.fraction, tok.eos_id(), o.data);
  if (data.val_examples() == 0) fail("{}: the held-out part (--fraction {}) has no examples", o.data, o.fraction);
  train::require_scored_tokens(data.held_out_part(), o.data, fmt::format("held-out part (--fraction {})", o.fraction));
  std::vector<const train::Example*> held_out;
  int64_t cut = 0;
  for (size_t i = size_t(data.train_examples()); i < data.examples().size(); ++i) {
    held_out.push_back(&data.examples()[i]);
    cut += data.examples()[i].cut;
  }
  const train::PairsScore s = train::score_pairs(m, held_out, o.batch, tok.eos_id(), o.mixed());
  if (o.json) {
    fmt::print("{}\n", nlohmann::json{{"loss", s.loss()}, {"exact_match", s.accuracy()}, {"exact", s.exact},
                                      {"examples", s.examples}, {"completion_tokens", s.tokens}, {"cut", cut}}.dump());
    return;
  }
  fmt::print("loss {:.4f}  exact match {:.2f}% ({}/{})  ({} completion tokens; {} examples cut to {} tokens)\n",
             s.loss(), 100 * s.accuracy(), s.exact, s.examples, s.tokens, cut, seq);
}

}  // namespace

void add_eval(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("eval", "loss and perplexity on the held-out tail of a text file, or loss over "
                                             "completions and exact match on a pairs file (.jsonl)");
  add_model_options(cmd, o->m, /*adapter_required=*/false, /*several_adapters=*/true);
  add_tokenizer_option(cmd, o->tokenizer);
  cmd->add_option("--data", o->data, "UTF-8 text file, or pairs file (.jsonl)")->capture_default_str();
  // The same spellings as train's held-out options; --fraction and --batches stay as hidden aliases.
  cmd->add_option("--val-fraction", o->fraction, "evaluate on this tail of the file, or of its lines (1: all of it)")
      ->capture_default_str();
  cmd->add_option("--fraction", o->fraction)->group("");
  cmd->add_option("--batch", o->batch, "sequences per batch")->capture_default_str();
  auto* seq = cmd->add_option("--seq", o->seq, "tokens per sequence (pairs: cut longer examples; default the model's positions)")
                  ->capture_default_str();
  cmd->add_option("--eval-batches", o->batches, "at most this many batches (text)")->capture_default_str();
  cmd->add_option("--batches", o->batches)->group("");
  cmd->add_flag("--json", o->json, "print one JSON object");
  cmd->callback([o, seq] {
    if (o->batch <= 0 || o->seq <= 0 || o->batches <= 0) fail("--batch, --seq and --eval-batches must be positive");
    o->seq_given = seq->count() > 0;
    train::TrainedModel m = train::load_model_with_adapters(o->m.model, o->m.adapters, o->m.seed, o->m.base_dtype, o->m.device);
    models::Tokenizer tok = tokenizer_for(o->m.model, o->tokenizer, m.base->vocab_size());
    if (train::is_pairs_file(o->data)) eval_pairs(*o, m, tok);
    else if (o->mixed()) fail("several (or named) --adapter need a pairs file (.jsonl) whose rows name theirs");
    else eval_text(*o, m, tok);
  });
}

}  // namespace mp::cli
