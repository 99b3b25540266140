// minipeft generate: continue a prompt, greedy or sampled, with a KV cache.
#include <fmt/format.h>

#include "models/generate.h"
#include "engine/error.h"
#include "tools/cli/command.h"
#include "tools/cli/model_options.h"
#include "tools/paths.h"
#include "tools/trainer.h"

namespace mp::cli {

void add_generate(CLI::App& app) {
  struct Options {
    ModelChoice m;
    std::string prompt = "ROMEO:";
    models::GenerateOptions gen;
    bool sample = false, no_eos = false;
  };
  auto o = std::make_shared<Options>();
  o->gen.max_new_tokens = 40;
  CLI::App* cmd = app.add_subcommand("generate", "continue a prompt, with or without an adapter (greedy unless --sample)");
  add_model_options(cmd, o->m);
  cmd->add_option("--prompt", o->prompt, "the text to continue")->capture_default_str();
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
    models::Tokenizer tok = models::Tokenizer::from_dir(default_tokenizer_dir());
    tools::TrainedModel m = tools::load_model(o->m.model, o->m.adapter, o->m.seed, o->m.base_dtype, o->m.base_nf4);
    // A LoRA adapter lives inside the base model's Linear layers; a soft
    // prompt or a prefix goes in front of the prompt.
    models::Prefill prefill;
    if (m.peft) prefill = m.peft->generation_prefill();
    o->gen.do_sample = o->sample;
    o->gen.eos_token_id = o->no_eos ? -1 : tok.eos_id();
    std::vector<int32_t> prompt = tok.encode(o->prompt);
    if (prompt.empty()) fail("--prompt is empty");
    std::vector<int32_t> out = models::generate(*m.base, prompt, o->gen, prefill);
    fmt::print("{}\n", tok.decode(out));
  });
}

}  // namespace mp::cli
