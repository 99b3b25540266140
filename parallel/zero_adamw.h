// ZeRO stage 1 (Rajbhandari et al., "ZeRO: Memory Optimizations Toward
// Training Trillion Parameter Models", 2020): AdamW with its state sharded
// across the ranks. The trainable parameters, flattened in order into one
// vector of P elements, are cut into N shards of ceil(P / N) elements; rank r
// keeps m and v for shard r only (8 ceil(P / N) bytes instead of 8 P),
// updates that part of the parameters from the averaged gradients every rank
// holds (parallel/grad_sync.h), and an all-gather gives every rank the whole
// updated parameters.
//
// The update is nn::AdamW on 1-D views of the shard, the same kernel on the
// same numbers, so a sharded run matches an unsharded one bit for bit.
// state_dict() / load_state_dict() speak the unsharded AdamW's keys (every
// rank calls them together: they gather, or pick each rank's shard), so a
// checkpoint resumes on any number of ranks, with or without ZeRO.
#pragma once
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "parallel/communicator.h"
#include "nn/adamw.h"

namespace mp::parallel {

class ZeroAdamW : public nn::Optimizer {
 public:
  ZeroAdamW(Communicator& comm, const std::vector<nn::NamedParameter>& params, const nn::AdamWOptions& options);

  size_t state_bytes() const override;  // this rank's shard
  nn::TensorMap state_dict() const override;
  void load_state_dict(const nn::TensorMap& state) override;

  int64_t total_elements() const { return total_; }  // P
  int64_t shard_elements() const { return shard_; }  // ceil(P / N)

 private:
  // The part of one parameter in this rank's shard: elements [begin, begin +
  // length) of the flattened parameter, at `at` in the shard.
  struct Piece {
    size_t param;
    int64_t begin, length, at;
    ag::Variable view;  // (length) a view of the parameter's elements: what inner_ updates
  };
  void update(Slot& slot) override;  // hand the piece its gradient
  void finish_step() override;       // update the shard, gather the parameters
  // Every rank's `piece values` (shard_ each) into one flat (N * shard_) tensor.
  Tensor gather(const std::function<Tensor(const Piece&)>& values) const;

  Communicator& comm_;
  std::vector<nn::NamedParameter> params_;
  std::vector<int64_t> offset_;  // each parameter's first element in the flat vector
  int64_t total_ = 0, shard_ = 0;
  std::vector<Piece> pieces_;
  std::unordered_map<const ag::VarImpl*, size_t> piece_of_;
  std::unique_ptr<nn::AdamW> inner_;  // over the pieces' views: the shard's m and v
};

}  // namespace mp::parallel
