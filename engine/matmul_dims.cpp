#include "engine/matmul_dims.h"

#include "engine/error.h"

namespace mp {

MatmulDims matmul_dims(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out) {
  if (a.dim() != 3 || b.dim() != 3 || out.dim() != 3)
    fail("matmul kernel wants 3-D tensors, got {}, {} -> {}", shape_str(a.shape()), shape_str(b.shape()),
         shape_str(out.shape()));
  if (!a.is_contiguous() || !b.is_contiguous() || !out.is_contiguous()) fail("matmul kernel wants contiguous tensors");
  const MatmulDims d{out.size(0), out.size(1), out.size(2), trans_a ? a.size(1) : a.size(2), a.size(0), b.size(0)};
  const int64_t a_rows = trans_a ? a.size(2) : a.size(1), b_k = trans_b ? b.size(2) : b.size(1),
                b_cols = trans_b ? b.size(1) : b.size(2);
  if (a_rows != d.M || b_k != d.K || b_cols != d.N || (d.batch_a != 1 && d.batch_a != d.batch) ||
      (d.batch_b != 1 && d.batch_b != d.batch))
    fail("matmul kernel: {}{} @ {}{} does not give {}", shape_str(a.shape()), trans_a ? "^T" : "",
         shape_str(b.shape()), trans_b ? "^T" : "", shape_str(out.shape()));
  return d;
}

}  // namespace mp
