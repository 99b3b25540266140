// write_plots: the loss curves and the memory bars of a comparison, drawn by
// gnuplot from the data files and script written beside them (out/plots/).
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sstream>

#include "nn/atomic_file.h"
#include "cli/compare/compare.h"
#include "cli/compare/run_program.h"

namespace mp::cli {

namespace fs = std::filesystem;

std::string write_plots(const CompareResult& r, const std::string& out_dir) {
  std::string dir = out_dir + "/plots";
  std::error_code ec;
  fs::create_directories(dir, ec);
  // Is gnuplot there, and can it draw with cairo? It lists its terminals.
  if (run_program({"gnuplot", "-e", "set terminal"}, dir, "gnuplot.log") != 0) {
    fs::remove(dir + "/gnuplot.log", ec);
    return "gnuplot not found: no plots (results.json has the numbers)";
  }
  std::ifstream terminals(dir + "/gnuplot.log");
  std::stringstream listed;
  listed << terminals.rdbuf();
  const std::string terminal = listed.str().find("pngcairo") != std::string::npos ? "pngcairo" : "png";
  // Loss curves: x = training tokens; the training loss smoothed (EMA 0.9,
  // bias-corrected) and the held-out evaluations.
  std::string plot_loss;
  const int64_t tokens_per_step = r.options.train.batch * r.options.train.seq;
  int i = 0;
  for (const MethodResult& m : r.methods) {
    std::string data = "# tokens step loss ema val_loss\n";
    double ema = 0, w = 0;
    for (const train::StepRecord& s : m.train.steps) {
      ema = 0.9 * ema + 0.1 * s.loss;
      w = 0.9 * w + 0.1;
      data += fmt::format("{} {} {:.6f} {:.6f} {}\n", s.step * tokens_per_step, s.step, s.loss, ema / w,
                          s.val_loss >= 0 ? fmt::format("{:.6f}", s.val_loss) : std::string("?"));
    }
    nn::write_file_atomically(dir + "/loss_" + m.method + ".dat", data);
    ++i;
    plot_loss += fmt::format("{}'loss_{}.dat' using 1:4 with lines lw 2 lc {} title '{} (train, EMA)', "
                             "'' using 1:5 with linespoints pt 7 lc {} dt 2 title '{} (held-out)'",
                             plot_loss.empty() ? "" : ", ", m.method, i, m.method, i, m.method);
  }
  std::string mem = "# method weights grads optimizer activations workspace (MiB)\n";
  for (const MethodResult& m : r.methods) {
    const train::TrainResult& t = m.train;
    mem += fmt::format("{} {:.3f} {:.3f} {:.3f} {:.3f} {:.3f}\n", m.method,
                       mib(at_peak(t, Tag::weights) + at_peak(t, Tag::adapter)), mib(at_peak(t, Tag::grads)),
                       mib(at_peak(t, Tag::optimizer)), mib(at_peak(t, Tag::activations)),
                       mib(at_peak(t, Tag::workspace)));
  }
  nn::write_file_atomically(dir + "/memory.dat", mem);
  std::string script = fmt::format(
      "set terminal {0} size 1000,560\n"
      "set datafile missing '?'\n"
      "set grid\n"
      "set output 'loss.png'\n"
      "set title 'Adapting to the licence corpus: loss vs training tokens ({1} steps x {2}x{3})'\n"
      "set xlabel 'training tokens'\nset ylabel 'loss (nats/token)'\nset key outside right top\n"
      "plot {4}\n"
      "set output 'memory.png'\n"
      "set title 'Memory by category at the peak of the sum (stacked: the bar is the peak)'\n"
      "set xlabel 'method'\nset ylabel 'MiB'\nunset grid\nset grid ytics\n"
      "set style data histograms\nset style histogram rowstacked\nset style fill solid 0.85 border -1\n"
      "set boxwidth 0.6\nset key outside right top\nset yrange [0:*]\n"
      "plot 'memory.dat' using 2:xtic(1) title 'weights', '' using 3 title 'grads', '' using 4 title 'optimizer', "
      "'' using 5 title 'activations', '' using 6 title 'workspace'\n",
      terminal, r.options.train.steps, r.options.train.batch, r.options.train.seq, plot_loss);
  const ScaleResult& s = r.scale;
  if (s.done) {  // planned peak (GiB) against parameters, one line per method and family
    std::string data[2] = {"# params(B) planned peak (GiB) per method\n", data[0]};
    for (const SizePoint& p : s.sizes) {
      std::string line = fmt::format("{:.4f}", double(p.all_params) / 1e9);
      for (size_t peak : p.peak) line += fmt::format(" {:.4f}", double(peak) / (1 << 30));
      data[p.model.starts_with("opt") ? 1 : 0] += line + "\n";
    }
    nn::write_file_atomically(dir + "/scale_gpt2.dat", data[0]);
    nn::write_file_atomically(dir + "/scale_opt.dat", data[1]);
    std::string lines;
    for (size_t m = 0; m < s.methods.size(); ++m)
      for (const char* family : {"gpt2", "opt"})
        lines += fmt::format("{}'scale_{}.dat' using 1:{} with linespoints lc {} dt {} pt 7 title '{} ({})'",
                             lines.empty() ? "" : ", ", family, m + 2, m + 1, family[0] == 'g' ? 1 : 2, s.methods[m],
                             family);
    script += fmt::format(
        "set output 'scale.png'\nunset style\nset style data linespoints\nset grid\n"
        "set title 'Planned peak of one training step (B={}, T={}, AdamW) against model size'\n"
        "set xlabel 'parameters (billions)'\nset ylabel 'GiB'\nset logscale xy\nset yrange [*:*]\nplot {}\n",
        s.size_batch, s.size_seq, lines);
  }
  nn::write_file_atomically(dir + "/plots.gp", script);
  if (run_program({"gnuplot", "plots.gp"}, dir, "gnuplot.log") != 0)
    return fmt::format("gnuplot failed (see {}/gnuplot.log): no plots", dir);
  return fmt::format("wrote {0}/loss.png, {0}/memory.png{1}", dir, s.done ? fmt::format(" and {}/scale.png", dir) : "");
}

}  // namespace mp::cli
