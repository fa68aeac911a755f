// The rows of a C-contiguous Q made orthonormal in place, in order, as
// src/optkern/hessian/_orthonormal.py's orthonormalize_rows made them by lanczos_orthogonalize_ calls
// (Hutch++'s sketch basis, gradient_concentration's Ritz vectors): row i normalized (k = 0), then up to
// max_passes CGS2 passes against Q[:i] while a pass leaves less than half of it; a row that never
// stops cancelling (or cancels to zero) is in the span of the rows before and is zeroed.
//
// Each row depends on the rows before it, so the rows cannot go through lanczos_orthogonalize_rows_
// (which projects every row on Q[:k] only, never on another row of the block). But a row's first
// pass begins with Q[:i] w of the normalized row, which needs only rows that are final: for a panel
// of kPanel rows starting at lo, Q[:lo] w of all of them is taken in one sweep over Q[:lo] (each block
// of Q read once for the panel, not once per row), Q[lo:i] w just before row i's pass, and the pass
// goes on from those sums (cgs2_normalize's `first`). Every block partial, sum in block order,
// update and norm is the one lanczos_orthogonalize_ makes, so every row gets the same bits as by the
// calls (any thread count): the first pass of a row read Q[:i] three times, now about twice.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "linalg_kernels.hpp"
#include "optkern/common.hpp"
#include "optkern/signatures.hpp"
#include "parallel.hpp"
#include "py_arrays.hpp"

namespace optkern {
namespace {
using namespace linalg;  // (the column-block kernels: linalg_kernels.hpp)

// Rows per panel: more rows share the sweep over Q[:lo], but each row's own dots over Q[lo:i] grow
// (not tuned: at 8 the shared sweep is an eighth of a row's reads, the own dots up to 7 rows).
constexpr int64_t kPanel = 8;

// Block partials part[q * stride + j] (q the block) summed in block order for j < m, as
// cgs2_normalize's sum_parts sums them.
void sum_blocks(const double* part, int64_t nb, int64_t stride, int64_t m, double* out) {
  for (int64_t j = 0; j < m; ++j) {
    double s = 0.0;
    for (int64_t q = 0; q < nb; ++q) s += part[q * stride + j];
    out[j] = s;
  }
}

template <class T> int64_t orthonormalize(T* Q, int64_t r, int64_t n, double* sines, int max_passes) {
  const int64_t nb = (n + kBlock - 1) / kBlock, rr = std::max<int64_t>(r, 1);
  std::vector<Chunk> blocks;
  for (int64_t q = 0; q < nb; ++q) blocks.push_back({0, q * kBlock, std::min(kBlock, n - q * kBlock)});
  std::vector<double> coeffs(static_cast<size_t>(rr)), part;
  std::vector<double> first(static_cast<size_t>(kPanel * rr));  // first[v * r + j]: Q_j w_v of the panel's row v
  auto row = [&](int64_t i) { return Q + i * n; };
  int64_t kept = 0;
  for (int64_t lo = 0; lo < r; lo += kPanel) {
    const int64_t b = std::min(kPanel, r - lo);
    char live[kPanel] = {};  // rows with a finite nonzero norm: their passes run
    for (int64_t v = 0; v < b; ++v) {
      const double f = cgs2_normalize<T, T>(Q, n, 0, row(lo + v), coeffs.data(), 2);  // (w / ||w||)
      if (f == 0.0) {
        sines[lo + v] = 0.0;  // (a zero row, left zero)
      } else if (!std::isfinite(f)) {
        sines[lo + v] = std::numeric_limits<double>::quiet_NaN();  // (kept as it is: not finite)
        ++kept;
      } else {
        live[v] = 1;
      }
    }
    if (lo > 0) {  // Q[:lo] w for the panel's rows, each block of Q[:lo] read once
      part.assign(size_t(nb * b * lo), 0.0);
      for_each_chunk(blocks, n * lo * b, [&](const Chunk& bl) {
        double* p = &part[size_t(bl.start / kBlock * b * lo)];
        for (int64_t g = 0; g < lo; g += kRows)
          for (int64_t v = 0; v < b; ++v)
            if (live[v]) block_dots(row(g), n, std::min(kRows, lo - g), bl.start, bl.len, row(lo + v), p + v * lo + g);
      });
      for (int64_t v = 0; v < b; ++v)
        if (live[v]) sum_blocks(part.data() + v * lo, nb, b * lo, lo, &first[size_t(v * r)]);
    }
    for (int64_t v = 0; v < b; ++v) {
      if (!live[v]) continue;
      const int64_t i = lo + v, m = i - lo;
      double* c1 = &first[size_t(v * r)];
      if (m > 0) {  // Q[lo:i] w: the panel's rows before this one, final now
        part.assign(size_t(nb * m), 0.0);
        for_each_chunk(blocks, n * m, [&](const Chunk& bl) {
          block_dots(row(lo), n, m, bl.start, bl.len, row(i), &part[size_t(bl.start / kBlock * m)]);
        });
        sum_blocks(part.data(), nb, m, m, c1 + lo);
      }
      double left = cgs2_normalize<T, T>(Q, n, i, row(i), coeffs.data(), 2, c1);
      sines[i] = left;  // (the fraction left by the first pass: the sine of the angle with Q[:i])
      bool independent = false;
      for (int p = 1;; ++p) {
        if (left == 0.0) break;
        if (!(left < 0.5)) {  // no cancellation (or NaN): orthogonal to the rows before to rounding
          independent = true;
          break;
        }
        if (p >= max_passes) break;
        left = cgs2_normalize<T, T>(Q, n, i, row(i), coeffs.data(), 2);
      }
      if (independent) {
        ++kept;
      } else {
        std::fill(row(i), row(i) + n, T(0));
      }
    }
  }
  return kept;
}

// The most passes a row may take. A row in the span of the rows before (any row past n of them)
// never stops cancelling: it took every pass asked for -- 10**6 passes on a (4, 2) Q ran 8 s, 2**31 - 1
// hours, without the GIL. A pass leaves a row's part in that span ~unit roundoff times smaller, so a
// row with any part outside it, down to the smallest subnormal (2**-1074), is clear of the span in
// fewer than 1074 / 23 (float32's mantissa) passes: no result needs more than 64.
constexpr int64_t kMaxPasses = 64;

int64_t orthonormalize_rows(py::handle Q_h, py::handle sines_h, int64_t max_passes) {
  if (max_passes < 1 || max_passes > kMaxPasses)
    throw py::value_error("max_passes: expected 1 to " + std::to_string(kMaxPasses) + ", got " +
                          std::to_string(max_passes));
  const py::dtype dt = float_dtype<HostArrays>(Q_h, "Q");
  HostArgs args(dt);
  char* Q = args.get(Q_h, "Q", -1, true);
  const auto rn = HostArrays::shape(Q_h);
  if (rn.size() != 2) throw py::value_error("Q: expected a 2-D array (vectors as rows)");
  double* sp = args.get<double>(sines_h, "sines", py::dtype::of<double>(), rn[0], true);
  args.check_overlap();
  const bool single = dt.equal(py::dtype::of<float>());  // (with the GIL: the comparison is Python's)
  py::gil_scoped_release nogil;
  if (single) return orthonormalize<float>(reinterpret_cast<float*>(Q), rn[0], rn[1], sp, int(max_passes));
  return orthonormalize<double>(reinterpret_cast<double*>(Q), rn[0], rn[1], sp, int(max_passes));
}

}  // namespace

void register_orthonormal(py::module_& m) { sig::orthonormal(m, &orthonormalize_rows); }

}  // namespace optkern
