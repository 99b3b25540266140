// Embedding lookup: out[n] = table[ids[n]]. Its gradient scatters each output
// row's gradient back onto the row it was read from (rows read twice get both
// gradients summed); rows never read get 0. Keeps only the ids.
#include "autograd/ops.h"
#include "engine/ops.h"

namespace mp::ag {

Variable embedding(const Tensor& ids, const Variable& table) {
  Tensor out = ops::embedding(ids, table.value());  // (..., C)
  Tensor flat_ids = ids.reshape({-1}).contiguous();  // (N)
  Shape table_shape = table.shape();                 // (V, C)
  return make_result(out, "embedding", {table}, [flat_ids, table_shape](const Tensor& g, std::span<Tensor> gin) {
    Tensor g2 = g.reshape({-1, table_shape[1]}).contiguous();  // (N, C)
    Tensor gtable = Tensor::zeros(table_shape, g.dtype(), g.device());
    backend(g.device()).embedding_backward(flat_ids, g2, gtable);
    gin[0] = gtable;
  });
}

}  // namespace mp::ag
