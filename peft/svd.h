// Singular value decomposition of a small host matrix, in double, with
// LAPACK's dgesvd (OpenBLAS exports LAPACK). Used to re-factor a LoRA delta
// weight into a lower rank (peft/weighted_adapter.cpp).
#pragma once
#include <cstdint>
#include <vector>

namespace mp::peft {

// a = u diag(s) vh, singular values descending, k = min(m, n).
struct Svd {
  int64_t k = 0;
  std::vector<double> u;   // (m, k) row-major
  std::vector<double> s;   // (k)
  std::vector<double> vh;  // (k, n) row-major
};

// The thin SVD of a (m, n) row-major; mp::Error if LAPACK does not converge.
Svd svd(const std::vector<double>& a, int64_t m, int64_t n);

}  // namespace mp::peft
