// minipeft generate: continue a prompt, greedy or sampled, with a KV cache;
// or, with --prompts, a JSONL of prompts in one mixed batch, each row with
// the adapter its line names (greedy).
#include <chrono>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "models/generate.h"
#include "engine/error.h"
#include "train/adapters.h"
#include "cli/command.h"
#include "cli/model_options.h"
#include "cli/tokenizer_option.h"
#include "train/data/pairs.h"
#include "train/data/paths.h"
#include "train/trainer.h"

namespace mp::cli {

namespace {

using Clock = std::chrono::steady_clock;

// Greedy continuations of a --prompts file in one mixed batch, one JSON line
// per prompt; with `compare`, the same prompts again one at a time, switching
// adapters between them, and both throughputs.
void generate_mixed(train::TrainedModel& m, const models::Tokenizer& tok, const std::string& path, int max_new_tokens,
                    int eos, bool compare) {
  if (!m.peft) fail("--prompts needs at least one --adapter");
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> names;
  for (const train::PairLine& l : train::read_pairs_file(path, /*allow_adapter=*/true, /*need_completion=*/false)) {
    prompts.push_back(tok.encode(l.prompt));
    if (prompts.back().empty()) fail("{} line {}: the prompt is empty", path, l.line);
    names.push_back(l.adapter);
  }
  names = train::row_adapters(names, m, path);
  auto t0 = Clock::now();
  const std::vector<std::vector<int32_t>> out = m.peft->generate(prompts, names, max_new_tokens, eos);
  const double mixed_s = std::chrono::duration<double>(Clock::now() - t0).count();
  int64_t new_tokens = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const std::span<const int32_t> continuation = std::span(out[i]).subspan(prompts[i].size());
    new_tokens += int64_t(continuation.size());
    fmt::print("{}\n", nlohmann::json{{"adapter", names[i]}, {"prompt", tok.decode(prompts[i])},
                                      {"completion", tok.decode(continuation)}}
                           .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  if (!compare) return;
  bool same = true;
  t0 = Clock::now();
  for (size_t i = 0; i < prompts.size(); ++i) {  // one row at a time, the adapter switched in between
    if (names[i] == peft::PeftModel::kBaseName) m.peft->disable_adapters();
    else m.peft->enable_adapters(), m.peft->set_adapter(names[i]);
    same = same && m.peft->generate({prompts[i]}, {names[i]}, max_new_tokens, eos)[0] == out[i];
  }
  m.peft->enable_adapters();
  const double switching_s = std::chrono::duration<double>(Clock::now() - t0).count();
  fmt::print(stderr, "mixed batch of {}: {:.3f} s ({:.1f} new tokens/s); one row at a time, switching adapters: "
             "{:.3f} s ({:.1f} new tokens/s); mixed {:.2f}x faster; same tokens: {}\n",
             prompts.size(), mixed_s, double(new_tokens) / mixed_s, switching_s, double(new_tokens) / switching_s,
             switching_s / mixed_s, same ? "yes" : "NO");
  if (!same) fail("the mixed batch and the rows run alone gave different tokens");
}

}  // namespace

void add_generate(CLI::App& app) {
  struct Options {
    ModelChoice m;
    std::string tokenizer;  // "" : the model folder's own, else GPT-2's (cli/tokenizer_option.h)
    std::string prompt = "ROMEO:", prompts;
    models::GenerateOptions gen;
    bool sample = false, no_eos = false, compare = false;
  };
  auto o = std::make_shared<Options>();
  o->gen.max_new_tokens = 40;
  CLI::App* cmd = app.add_subcommand("generate", "continue a prompt, with or without an adapter (greedy unless --sample)");
  add_model_options(cmd, o->m, /*adapter_required=*/false, /*several_adapters=*/true);
  add_tokenizer_option(cmd, o->tokenizer);
  cmd->add_option("--prompt", o->prompt, "the text to continue")->capture_default_str();
  cmd->add_option("--prompts", o->prompts,
                  "JSONL of {\"prompt\": ..., \"adapter\": name}: greedy, all in one mixed batch (no adapter: the base)");
  cmd->add_flag("--compare-switching", o->compare,
                "with --prompts: run the rows again one at a time, switching adapters, and print both throughputs");
  cmd->add_option("--max-new-tokens", o->gen.max_new_tokens, "tokens to generate")->capture_default_str();
  cmd->add_flag("--sample", o->sample, "sample instead of greedy decoding");
  cmd->add_option("--temperature", o->gen.temperature, "sampling temperature (> 0)")->capture_default_str();
  cmd->add_option("--top-k", o->gen.top_k, "keep the k most likely tokens (0: all)")->capture_default_str();
  cmd->add_option("--top-p", o->gen.top_p, "nucleus sampling mass (1: off)")->capture_default_str();
  cmd->add_option("--sample-seed", o->gen.seed, "seed of the sampler")->capture_default_str();
  cmd->add_flag("--no-eos", o->no_eos, "do not stop at <|endoftext|>");
  cmd->add_flag("--no-cache", [o](int64_t) { o->gen.use_cache = false; }, "recompute the whole sequence each step");
  cmd->callback([o] {
    if (o->gen.max_new_tokens <= 0) fail("--max-new-tokens must be positive");
    if (!(o->gen.temperature > 0)) fail("--temperature must be > 0");
    if (o->gen.top_k < 0 || !(o->gen.top_p > 0 && o->gen.top_p <= 1)) fail("--top-k must be >= 0 and --top-p in (0, 1]");
    train::TrainedModel m = train::load_model_with_adapters(o->m.model, o->m.adapters, o->m.seed, o->m.base_dtype, o->m.device);
    models::Tokenizer tok = tokenizer_for(o->m.model, o->tokenizer, m.base->vocab_size());
    o->gen.eos_token_id = o->no_eos ? -1 : tok.eos_id();
    if (!o->prompts.empty()) {
      if (o->sample) fail("--prompts generates greedily; --sample is for a single --prompt");
      generate_mixed(m, tok, o->prompts, o->gen.max_new_tokens, o->gen.eos_token_id, o->compare);
      return;
    }
    if (o->m.adapters.size() > 1) fail("several --adapter need --prompts (a JSONL whose rows name their adapter)");
    // A LoRA adapter lives inside the base model's Linear layers; a soft
    // prompt or a prefix goes in front of the prompt.
    models::Prefill prefill;
    if (m.peft) prefill = m.peft->generation_prefill();
    o->gen.do_sample = o->sample;
    std::vector<int32_t> prompt = tok.encode(o->prompt);
    if (prompt.empty()) fail("--prompt is empty");
    std::vector<int32_t> out = models::generate(*m.base, prompt, o->gen, prefill);
    fmt::print("{}\n", tok.decode(out));
  });
}

}  // namespace mp::cli
