// format_table: the comparison as a text table, at most 100 columns.
#include <cmath>
#include <fmt/format.h>

#include "cli/compare/compare.h"

namespace mp::cli {

using peft::with_commas;

namespace {

std::string human_bytes(double b) {
  if (b >= 1 << 30) return fmt::format("{:.1f} GiB", b / (1 << 30));
  if (b >= 1 << 20) return fmt::format("{:.1f} MiB", b / (1 << 20));
  if (b >= 1 << 10) return fmt::format("{:.1f} KiB", b / (1 << 10));
  return fmt::format("{:.0f} B", b);
}

// MiB for the table: one decimal, three for small non-zero amounts (an adapter's grads).
std::string mib_cell(size_t b) { return b > 0 && b < (size_t(1) << 20) ? fmt::format("{:.3f}", mib(b)) : fmt::format("{:.1f}", mib(b)); }

}  // namespace

std::string format_table(const CompareResult& r) {
  const CompareOptions& o = r.options;
  std::string s;
  const models::ModelConfig& c = r.base_config;
  s += fmt::format("base: {}\n", r.base_dir);
  s += fmt::format("  {} layers, width {}, {} heads, {} parameters", c.num_layers, c.hidden_size, c.num_heads,
                   with_commas(r.base_params));
  if (r.pretrained)
    s += fmt::format("; pretrained {} steps in {:.1f} s, final loss {:.3f}", r.pretrain.steps.size(),
                     r.pretrain_wall_s, r.pretrain.steps.empty() ? 0.0 : r.pretrain.steps.back().loss);
  s += "\n";
  s += fmt::format("budget: {} steps x batch {} x seq {} = {} tokens per method\n", o.train.steps, o.train.batch, o.train.seq,
                   with_commas(o.train.steps * o.train.batch * o.train.seq));
  s += fmt::format("before adapting: held-out licence loss {:.3f}, held-out Shakespeare ppl {:.1f}\n\n",
                   r.methods.empty() ? -1.0 : r.methods.front().licence_loss_before,
                   std::exp(r.shakespeare_loss_before));
  const char* row = "{:<7}{:>10}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>9}{:>9}{:>9}{:>7}\n";
  s += fmt::format(fmt::runtime(row), "method", "trainable", "weights", "grads", "optim", "activ", "total", "tok/s",
                   "licence", "Shakesp.", "on disk", "wall");
  s += fmt::format(fmt::runtime(row), "", "params", "MiB", "MiB", "MiB", "MiB", "MiB", "", "loss", "ppl", "", "s");
  for (const MethodResult& m : r.methods) {
    const train::TrainResult& t = m.train;
    s += fmt::format(fmt::runtime(row), m.method, with_commas(t.trainable_params),
                     mib_cell(at_peak(t, Tag::weights) + at_peak(t, Tag::adapter)),
                     mib_cell(at_peak(t, Tag::grads)),
                     mib_cell(at_peak(t, Tag::optimizer)),
                     mib_cell(at_peak(t, Tag::activations) + at_peak(t, Tag::workspace)),
                     mib_cell(t.peaks.total), fmt::format("{:.0f}", t.tokens_per_s),
                     fmt::format("{:.3f}", t.final_val_loss), fmt::format("{:.1f}", std::exp(m.shakespeare_loss_after)),
                     human_bytes(double(m.disk_bytes)), fmt::format("{:.1f}", m.wall_s));
  }
  s += "\nMemory: the ledger's bytes per category at the peak of their sum, which is total (weights\n"
       "include adapter tensors, activ includes workspace). Licence loss: held-out, after adapting.\n"
       "Shakesp. ppl: held-out, with the adapted model (forgetting). On disk: <out>/<method>/final.\n";
  if (r.serving.done) {
    const ServingResult& v = r.serving;
    s += fmt::format(
        "\nserving two LoRA adapters on one base: set_adapter {:.2f} us\n"
        "  held-out loss (licence/Shakespeare): licence adapter {:.3f}/{:.3f},\n"
        "  Shakespeare adapter {:.3f}/{:.3f}, adapters off {:.3f}/{:.3f}\n"
        "  forward ({}x{}): base {:.2f} ms, LoRA unmerged {:.2f} ms, merged {:.2f} ms\n"
        "  merge {:.2f} ms, unmerge {:.2f} ms\n",
        v.switch_us, v.loss[0][0], v.loss[0][1], v.loss[1][0], v.loss[1][1], v.base_loss[0], v.base_loss[1], o.train.batch,
        o.train.seq, v.forward_base_s * 1e3, v.forward_unmerged_s * 1e3, v.forward_merged_s * 1e3, v.merge_s * 1e3,
        v.unmerge_s * 1e3);
  }
  if (r.scale.done) s += format_scale_table(r.scale);
  s += fmt::format("total wall time {:.1f} s\n", r.wall_s);
  return s;
}

}  // namespace mp::cli
