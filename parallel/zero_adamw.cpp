#include "parallel/zero_adamw.h"

#include <set>

#include "engine/error.h"

namespace mp::parallel {

// The elements of a (contiguous) tensor as one row: (numel).
static Tensor flat(const Tensor& t) { return t.view({t.numel()}); }

ZeroAdamW::ZeroAdamW(Communicator& comm, const std::vector<nn::NamedParameter>& params,
                     const nn::AdamWOptions& options)
    : nn::Optimizer(params, options.lr, {}), comm_(comm), params_(this->params()) {
  for (const auto& [name, p] : params_) {
    if (p.value().dtype() != DType::f32 || !p.value().is_contiguous())
      fail("ZeRO: parameter '{}' must be a contiguous f32 tensor to be trained", name);
    offset_.push_back(total_);
    total_ += p.value().numel();
  }
  const int64_t ranks = comm.size();
  shard_ = (total_ + ranks - 1) / ranks;
  const int64_t first = comm.rank() * shard_, end = std::min(total_, first + shard_);
  std::vector<nn::NamedParameter> views;
  for (size_t k = 0; k < params_.size(); ++k) {
    const auto& [name, p] = params_[k];
    const int64_t lo = std::max(first, offset_[k]), hi = std::min(end, offset_[k] + p.value().numel());
    if (lo >= hi) continue;
    Piece piece{k, lo - offset_[k], hi - lo, lo - first, ag::Variable()};
    piece.view = ag::Variable(flat(p.value()).narrow(0, piece.begin, piece.length), true);
    piece_of_[p.impl().get()] = pieces_.size();
    views.emplace_back(name, piece.view);
    pieces_.push_back(std::move(piece));
  }
  inner_ = std::make_unique<nn::AdamW>(views, options);
}

size_t ZeroAdamW::state_bytes() const { return inner_->state_bytes(); }

void ZeroAdamW::update(Slot& slot) {
  auto it = piece_of_.find(slot.param.impl().get());
  if (it == piece_of_.end()) return;  // no element of this parameter is in this rank's shard
  const Piece& piece = pieces_[it->second];
  piece.view.impl()->grad = flat(slot.param.grad().contiguous()).narrow(0, piece.begin, piece.length);
}

Tensor ZeroAdamW::gather(const std::function<Tensor(const Piece&)>& values) const {
  const Device device = params_.empty() ? kCPU : params_[0].second.value().device();
  Tensor mine = Tensor::zeros({shard_}, DType::f32, device, Tag::workspace);  // (shard)
  for (const Piece& piece : pieces_) mine.narrow(0, piece.at, piece.length).copy_from(values(piece));
  Tensor all = Tensor::empty({shard_ * comm_.size()}, DType::f32, device, Tag::workspace);  // (N * shard)
  comm_.all_gather(mine, all)->wait();
  return all;
}

void ZeroAdamW::finish_step() {
  inner_->set_lr(lr());
  inner_->step();
  inner_->zero_grad();
  Tensor all = gather([](const Piece& piece) { return piece.view.value(); });
  for (size_t k = 0; k < params_.size(); ++k) {
    const Tensor& p = params_[k].second.value();
    flat(p).copy_from(all.narrow(0, offset_[k], p.numel()));
  }
}

// The unsharded keys: "step", "step.<param>", and "m.<param>", "v.<param>"
// shaped like the parameter, gathered from every rank's shard.
nn::TensorMap ZeroAdamW::state_dict() const {
  nn::TensorMap out = nn::Optimizer::state_dict();  // the step counts
  const nn::TensorMap mine = inner_->state_dict();
  for (const char* state : {"m", "v"}) {
    bool any = false;
    for (const auto& [key, t] : mine) any = any || key.rfind(std::string(state) + ".", 0) == 0;
    // Every rank has state once a step has run, or none before: the same answer everywhere.
    if (!any) continue;
    Tensor all = gather([&](const Piece& piece) {
      auto it = mine.find(std::string(state) + "." + params_[piece.param].first);
      return it != mine.end() ? it->second : Tensor::zeros({piece.length}, DType::f32, piece.view.value().device());
    });
    for (size_t k = 0; k < params_.size(); ++k) {
      const auto& [name, p] = params_[k];
      if (!out.count("step." + name)) continue;
      out[std::string(state) + "." + name] = all.narrow(0, offset_[k], p.value().numel()).contiguous().view(p.shape());
    }
  }
  return out;
}

void ZeroAdamW::load_state_dict(const nn::TensorMap& state) {
  nn::TensorMap steps, shard;
  std::set<std::string> names;
  for (const auto& [name, p] : params_) names.insert(name);
  for (const auto& [key, t] : state) {
    const bool m_or_v = key.rfind("m.", 0) == 0 || key.rfind("v.", 0) == 0;
    if (!m_or_v) {
      steps[key] = t;  // "step" and "step.<param>": the base checks them
      continue;
    }
    if (!names.count(key.substr(2))) fail("optimizer state does not match the optimizer: unexpected key '{}'", key);
  }
  nn::Optimizer::load_state_dict(steps);
  shard["step"] = state.at("step");
  for (const Piece& piece : pieces_) {
    const auto& [name, p] = params_[piece.param];
    if (auto it = state.find("step." + name); it != state.end()) shard["step." + name] = it->second;
    for (const char* s : {"m.", "v."}) {
      auto it = state.find(s + name);
      if (it == state.end()) continue;
      if (it->second.shape() != p.shape())
        fail("optimizer state {}{}: checkpoint has {}, parameter is {}", s, name, shape_str(it->second.shape()),
             shape_str(p.shape()));
      shard[s + name] = flat(it->second.contiguous()).narrow(0, piece.begin, piece.length).contiguous();
    }
  }
  inner_->load_state_dict(shard);
}

}  // namespace mp::parallel
