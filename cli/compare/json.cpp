// write_results_json: every number of the comparison, for scripts and the study report.
#include <cmath>
#include <nlohmann/json.hpp>

#include "nn/atomic_file.h"
#include "cli/compare/compare.h"
#include "cli/tag_bytes_json.h"

namespace mp::cli {

static nlohmann::json peaks_json(const train::MemoryPeaks& p) {
  nlohmann::json j;
  for (int t = 0; t < kTags; ++t) j[std::string(tag_name(Tag(t)))] = p.by_tag[t];
  j["total"] = p.total;
  return j;
}

static nlohmann::json steps_json(const train::TrainResult& t) {
  nlohmann::json a = nlohmann::json::array();
  for (const train::StepRecord& s : t.steps) {
    nlohmann::json j = {{"step", s.step}, {"loss", s.loss}, {"lr", s.lr}, {"seconds", s.seconds}};
    if (s.val_loss >= 0) j["val_loss"] = s.val_loss;
    a.push_back(j);
  }
  return a;
}

void write_results_json(const CompareResult& r, const std::string& path) {
  const CompareOptions& o = r.options;
  nlohmann::json j;
  j["options"] = {{"out", o.out_dir}, {"base", o.base}, {"model", o.train.model}, {"pretrain_data", o.pretrain_data},
                  {"adapt_data", o.train.data}, {"pretrain_steps", o.pretrain_steps}, {"steps", o.train.steps},
                  {"batch", o.train.batch}, {"seq", o.train.seq}, {"lr", o.train.lr}, {"pretrain_lr", o.pretrain_lr},
                  {"methods", o.methods}, {"lora_r", o.train.lora_r}, {"lora_targets", o.train.lora_targets},
                  {"virtual_tokens", o.train.num_virtual_tokens}, {"eval_batches", o.train.eval_batches}, {"seed", o.train.seed},
                  {"precision", dtype_name(o.train.precision)}, {"recompute", o.train.recompute}};
  const models::ModelConfig& c = r.base_config;
  j["base"] = {{"dir", r.base_dir}, {"layers", c.num_layers}, {"width", c.hidden_size}, {"heads", c.num_heads},
               {"vocab", c.vocab_size}, {"params", r.base_params}, {"pretrained", r.pretrained}};
  if (r.pretrained)
    j["pretrain"] = {{"wall_s", r.pretrain_wall_s}, {"tokens_per_s", r.pretrain.tokens_per_s},
                     {"final_val_loss", r.pretrain.final_val_loss}, {"steps", steps_json(r.pretrain)}};
  j["shakespeare_loss_before"] = r.shakespeare_loss_before;
  j["shakespeare_ppl_before"] = std::exp(r.shakespeare_loss_before);
  j["methods"] = nlohmann::json::array();
  for (const MethodResult& m : r.methods) {
    const train::TrainResult& t = m.train;
    j["methods"].push_back({{"method", m.method},
                            {"trainable_params", t.trainable_params},
                            {"all_params", t.all_params},
                            {"peak_bytes", peaks_json(t.peaks)},
                            {"tokens_per_s", t.tokens_per_s},
                            {"mean_step_s", t.steps.empty() ? 0.0 : double(m.tokens) / t.tokens_per_s / double(t.steps.size())},
                            {"tokens", m.tokens},
                            {"licence_loss_before", m.licence_loss_before},
                            {"licence_loss_init", m.licence_loss_init},
                            {"licence_loss_after", t.final_val_loss},
                            {"shakespeare_loss_after", m.shakespeare_loss_after},
                            {"shakespeare_ppl_after", std::exp(m.shakespeare_loss_after)},
                            {"disk_bytes", m.disk_bytes},
                            {"wall_s", m.wall_s},
                            {"steps", steps_json(t)}});
  }
  if (r.serving.done) {
    const ServingResult& v = r.serving;
    j["serving"] = {{"switch_us", v.switch_us},
                    {"loss", {{"licence_adapter", {v.loss[0][0], v.loss[0][1]}},
                              {"shakespeare_adapter", {v.loss[1][0], v.loss[1][1]}},
                              {"adapters_off", {v.base_loss[0], v.base_loss[1]}}}},
                    {"tasks", {"licence", "shakespeare"}},
                    {"forward_base_s", v.forward_base_s},
                    {"forward_unmerged_s", v.forward_unmerged_s},
                    {"forward_merged_s", v.forward_merged_s},
                    {"forward_reps", v.forward_reps},
                    {"merge_s", v.merge_s},
                    {"unmerge_s", v.unmerge_s},
                    {"second_adapter_wall_s", v.second_adapter_wall_s}};
  }
  if (r.scale.done) {
    const ScaleResult& s = r.scale;
    nlohmann::json rows = nlohmann::json::array();
    for (const ScaleRow& row : s.rows)
      rows.push_back({{"method", row.title},
                      {"planned", {{"peak_total", row.planned.peak_total}, {"at_peak", tag_bytes_json(row.planned.at_peak.by_tag)}}},
                      {"measured", {{"peak_total", row.measured.peak_total}, {"at_peak", tag_bytes_json(row.measured.at_peak.by_tag)},
                                    {"tag_peaks", tag_bytes_json(row.measured.tag_peaks)}}},
                      {"peak_phase", row.measured.at_peak.phase},
                      {"peak_op", row.measured.at_peak.op},
                      {"step_s", row.measured.step_seconds},
                      {"tokens_per_s", row.tokens_per_s}});
    nlohmann::json sizes = nlohmann::json::array();
    for (const SizePoint& p : s.sizes) sizes.push_back({{"model", p.model}, {"params", p.all_params}, {"planned_peak", p.peak}});
    j["scale"] = {{"model", s.model}, {"batch", s.batch}, {"seq", s.seq}, {"timed_steps", s.timed_steps},
                  {"rows", rows}, {"size_batch", s.size_batch}, {"size_seq", s.size_seq},
                  {"methods", s.methods}, {"sizes", sizes}, {"wall_s", s.wall_s}};
  }
  j["wall_s"] = r.wall_s;
  nn::write_file_atomically(path, j.dump(1) + "\n");
}

}  // namespace mp::cli
