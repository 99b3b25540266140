// Embedding lookup and its backward (scatter-add).
//
//   out[n, :] = table[ids[n], :]              ids (N) i32, table (V, C), out (N, C)
//   gtable[ids[n], :] += gout[n, :]           for every n
//
// The backward is parallel over columns: each thread owns a band of columns of
// gtable, so repeated ids never race and the sum order is fixed.
#include "engine/cpu/dispatch.h"
#include "engine/cpu/kernels.h"

namespace mp::cpu {

namespace {

// Every id in [0, V), or an mp::Error naming the first one that is not.
void check_ids(const char* what, const Tensor& ids, int64_t V) {
  if (ids.dtype() != DType::i32) fail("{}: ids must be i32, got {}", what, dtype_name(ids.dtype()));
  if (!ids.is_contiguous()) fail("{}: ids must be contiguous", what);
  const int32_t* p = ids.data<int32_t>();
  for (int64_t n = 0; n < ids.numel(); ++n)
    if (p[n] < 0 || p[n] >= V)
      fail("{}: token id {} (position {}) is out of range for a vocabulary of {}", what, p[n], n, V);
}

}  // namespace

void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) {
  if (table.dim() != 2) fail("embedding: table must be (V, C), got {}", shape_str(table.shape()));
  const int64_t V = table.size(0), C = table.size(1), N = ids.numel();
  if (out.numel() != N * C) fail("embedding: output {} does not hold {} rows of {}", shape_str(out.shape()), N, C);
  if (!table.is_contiguous() || !out.is_contiguous()) fail("embedding: tensors must be contiguous");
  check_ids("embedding", ids, V);
  const int32_t* pid = ids.data<int32_t>();  // (N)
  visit_any(table.dtype(), [&]<class TT>() {
    visit_any(out.dtype(), [&]<class TO>() {
      const TT* pt = static_cast<const TT*>(table.raw());  // (V, C)
      TO* po = static_cast<TO*>(out.raw());                // (N, C)
#pragma omp parallel for schedule(static) if (N * C > (1 << 15))
      for (int64_t n = 0; n < N; ++n) {
        const TT* row = pt + int64_t(pid[n]) * C;
        for (int64_t c = 0; c < C; ++c) po[n * C + c] = convert<TO>(row[c]);
      }
    });
  });
}

void embedding_backward(const Tensor& ids, const Tensor& gout, const Tensor& gtable, int padding_idx) {
  if (gtable.dim() != 2) fail("embedding_backward: gtable must be (V, C), got {}", shape_str(gtable.shape()));
  const int64_t V = gtable.size(0), C = gtable.size(1), N = ids.numel();
  if (gout.numel() != N * C)
    fail("embedding_backward: gout {} does not hold {} rows of {}", shape_str(gout.shape()), N, C);
  if (gout.dtype() != gtable.dtype())
    fail("embedding_backward: dtypes {} and {} differ", dtype_name(gout.dtype()), dtype_name(gtable.dtype()));
  if (!gout.is_contiguous() || !gtable.is_contiguous()) fail("embedding_backward: tensors must be contiguous");
  check_ids("embedding_backward", ids, V);
  const int32_t* pid = ids.data<int32_t>();  // (N)
  visit_float(gtable.dtype(), "embedding_backward", [&]<class T>() {
    const T* pg = gout.data<T>();  // (N, C)
    T* pt = gtable.data<T>();      // (V, C)
    constexpr int64_t kBand = 64;  // columns per task
    const int64_t bands = (C + kBand - 1) / kBand;
#pragma omp parallel for schedule(static) if (N * C > (1 << 15))
    for (int64_t band = 0; band < bands; ++band) {
      const int64_t c0 = band * kBand, c1 = std::min(C, c0 + kBand);
      for (int64_t n = 0; n < N; ++n) {
        if (pid[n] == padding_idx) continue;
        T* dst = pt + int64_t(pid[n]) * C;
        const T* src = pg + n * C;
        for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
      }
    }
  });
}

}  // namespace mp::cpu
