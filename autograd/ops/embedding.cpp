// Embedding lookup: out[n] = table[ids[n]]. Its gradient scatters each output
// row's gradient back onto the row it was read from (rows read twice get both
// gradients summed); rows never read get 0, and so does row padding_idx
// (torch.nn.Embedding's padding_idx; -1: none). Keeps only the ids.
//
// A (V, C) table is large (GPT-2's is 154 MB) and the gradient touches only N
// rows of it. When the table is a leaf whose gradient already exists (GPT-2
// ties it to the lm_head, whose backward runs first and leaves a dense
// gradient there), the rows are added straight into that gradient: no
// (V, C) zeros, no second (V, C) pass to sum the two.
#include "autograd/ops.h"
#include "engine/ops.h"

namespace mp::ag {

// The leaf's gradient, if rows can be added into it in place: defined,
// contiguous, of g's dtype and device, and nobody else holding its bytes.
static Tensor* scatter_target(VarImpl* leaf, const Tensor& g) {
  if (!leaf) return nullptr;
  Tensor& grad = leaf->grad;
  if (!grad.defined() || !grad.is_contiguous() || grad.dtype() != g.dtype() || grad.device() != g.device() ||
      grad.storage().use_count() != 1 || grad.shape() != leaf->value.shape())
    return nullptr;
  return &grad;
}

Variable embedding(const Tensor& ids, const Variable& table, int padding_idx) {
  Tensor out = ops::embedding(ids, table.value());  // (..., C)
  Tensor flat_ids = ids.reshape({-1}).contiguous();  // (N)
  Shape table_shape = table.shape();                 // (V, C)
  // A leaf's gradient accumulates in its VarImpl (held by the graph's edge
  // anyway); kept here to add into it directly when it is already there.
  std::shared_ptr<VarImpl> leaf = needs_grad(table) && table.is_leaf() ? table.impl() : nullptr;
  return make_result(out, "embedding", {table},
                     [flat_ids, table_shape, leaf, padding_idx](const Tensor& g, std::span<Tensor> gin) {
                       Tensor g2 = g.reshape({-1, table_shape[1]}).contiguous();  // (N, C)
                       if (Tensor* grad = scatter_target(leaf.get(), g2)) {
                         ops::embedding_backward(flat_ids, g2, *grad, padding_idx);  // leaf grad += rows
                         return;  // gin[0] left undefined: nothing more to accumulate
                       }
                       Tensor gtable = Tensor::zeros(table_shape, g.dtype(), g.device());
                       ops::embedding_backward(flat_ids, g2, gtable, padding_idx);
                       gin[0] = gtable;
                     });
}

}  // namespace mp::ag
