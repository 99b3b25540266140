#include "peft/svd.h"

#include <algorithm>
#include <cstddef>

#include "engine/error.h"

// LAPACK's Fortran entry point (column-major; trailing hidden lengths of the
// two character arguments).
extern "C" void dgesvd_(const char* jobu, const char* jobvt, const int* m, const int* n, double* a, const int* lda,
                        double* s, double* u, const int* ldu, double* vt, const int* ldvt, double* work,
                        const int* lwork, int* info, size_t jobu_len, size_t jobvt_len);

namespace mp::peft {

Svd svd(const std::vector<double>& a, int64_t m, int64_t n) {
  // LAPACK reads our row-major (m, n) as the column-major (n, m) matrix a^T =
  // V S U^T: its "U" (n, k) column-major is our vh (k, n) row-major, its
  // "VT" (k, m) column-major is our u (m, k) row-major.
  Svd out;
  out.k = std::min(m, n);
  out.s.resize(size_t(out.k));
  out.u.resize(size_t(m * out.k));
  out.vh.resize(size_t(out.k * n));
  std::vector<double> work_a = a;  // dgesvd overwrites its input
  const int rows = int(n), cols = int(m), k = int(out.k);
  const char job = 'S';
  int info = 0, lwork = -1;
  double query = 0;
  dgesvd_(&job, &job, &rows, &cols, work_a.data(), &rows, out.s.data(), out.vh.data(), &rows, out.u.data(), &k,
          &query, &lwork, &info, 1, 1);
  lwork = int(query);
  std::vector<double> work(size_t(std::max(lwork, 1)));
  dgesvd_(&job, &job, &rows, &cols, work_a.data(), &rows, out.s.data(), out.vh.data(), &rows, out.u.data(), &k,
          work.data(), &lwork, &info, 1, 1);
  if (info != 0) fail("svd of a ({}, {}) matrix: LAPACK dgesvd returned info {}", m, n, info);
  return out;
}

}  // namespace mp::peft
