// One micro-batch as the trainer feeds it to a model: token ids, and for
// pairs (train/data/pairs.h) the labels and the attention mask that go with them,
// and for packed rows the positions and segments of the examples.
#pragma once
#include "engine/tensor.h"
#include "nn/rng.h"

namespace mp::train {

struct Batch {
  Tensor ids;             // (B, T) i32
  Tensor labels;          // (B, T) i32, -100 where there is nothing to learn; undefined: labels = ids (text)
  Tensor attention_mask;  // (B, T) i32, 1 = real token, 0 = padding; undefined: every token is real
  Tensor position_ids;    // (B, T) i32, packed rows: each example's positions from 0; undefined: the model's rule
  Tensor segment_ids;     // (B, T) i32, packed rows: which example of the row a token belongs to; undefined: one

  Batch() = default;
  // A batch of text windows: every token is real and is its own label.
  Batch(Tensor token_ids) : ids(std::move(token_ids)) {}  // NOLINT: implicit, a window batch is a Batch
  Batch(Tensor token_ids, Tensor label_ids, Tensor mask)
      : ids(std::move(token_ids)), labels(std::move(label_ids)), attention_mask(std::move(mask)) {}

  // The positions the loss counts after HF's shift: labels[:, 1:] that are
  // not -100 (text: every one of the B (T - 1)).
  int64_t targets() const;
  // Rows [first, first + count) of every tensor (data parallelism: this
  // rank's part of the global batch); count 0: the whole batch.
  Batch rows(nn::BatchRows part) const;
  // Every tensor copied to device d (batches are made on the host).
  Batch to(Device d) const;
};

}  // namespace mp::train
