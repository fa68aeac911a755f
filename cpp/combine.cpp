// Fixed-order row combinations, out = C V for C (k, m) and V (m, n) rows: thick restart's kept Ritz
// vectors, the Ritz vectors Q^T S and block Lanczos's residuals R S (src/optkern/hessian/_combine.py).
// A GEMM splits the sum over m by thread (OpenBLAS), so its bits followed the thread count; here each
// entry is C[i, 0] V[0, c] + C[i, 1] V[1, c] + ... added in order j = 0, 1, ..., m - 1, each product
// and each add rounded in the arrays' dtype -- what NumPy's and CuPy's elementwise multiply and add
// give, so the GPU (CuPy) and this agree bit for bit. That needs no fused multiply-add: each step is
// rules::scaled_plus (rules/rounding.hpp), which no compiler contracts (a per-file -ffp-contract=off
// did not survive the module's link-time optimization). Threads take column panels: which thread
// runs a panel changes nothing it computes.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <vector>

#include "optkern/common.hpp"
#include "optkern/rules/rounding.hpp"
#include "optkern/signatures.hpp"
#include "parallel.hpp"
#include "py_arrays.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace {

// Columns per panel: the m rows of V over a panel (m x 256 entries: 120 KiB for m = 60 in float64)
// stay in L2 while the k output rows are formed from them.
constexpr int64_t kPanel = 256;

// acc[i, :] = sum_j C[i, j] V[j, lo:lo+len] for one panel, rows j in order. Each output strip of
// 128 bytes is summed in registers over all j before it is stored (a pass over acc per j moved
// three times the bytes); the order of every entry's sum is the same either way.
template <class T>
OK_CLONES void panel(const T* C, const T* V, int64_t n, int64_t m, int64_t k, int64_t lo, int64_t len, T* acc) {
  constexpr int64_t L = 128 / int64_t(sizeof(T));
  if (m == 0) {
    for (int64_t e = 0; e < k * len; ++e) acc[e] = T(0);
    return;
  }
  for (int64_t i = 0; i < k; ++i) {
    const T* c = C + i * m;
    T* OK_RESTRICT a = acc + i * len;
    int64_t t = 0;
    for (; t + L <= len; t += L) {
      T r[L];
      const T* OK_RESTRICT v0 = V + lo + t;
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) r[l] = c[0] * v0[l];
      for (int64_t j = 1; j < m; ++j) {
        const T cj = c[j];
        const T* OK_RESTRICT v = V + j * n + lo + t;
#pragma omp simd
        for (int64_t l = 0; l < L; ++l) r[l] = rules::scaled_plus(cj, v[l], r[l]);  // r + round(c v)
      }
      for (int64_t l = 0; l < L; ++l) a[t + l] = r[l];
    }
    for (; t < len; ++t) {
      T r = c[0] * V[lo + t];
      for (int64_t j = 1; j < m; ++j) r = rules::scaled_plus(c[j], V[j * n + lo + t], r);
      a[t] = r;
    }
  }
}

template <class T>
void combine(const T* C, const T* V, T* out, int64_t k, int64_t m, int64_t n, bool transpose) {
  std::vector<Chunk> panels;
  for (int64_t lo = 0; lo < n; lo += kPanel) panels.push_back({0, lo, std::min(kPanel, n - lo)});
  for_each_chunk(panels, n * (m + k), [&](const Chunk& p) {
    std::vector<T> acc(size_t(k * p.len));
    panel(C, V, n, m, k, p.start, p.len, acc.data());  // (the whole panel read before out is written:
    for (int64_t i = 0; i < k; ++i)                     // out may be V's rows, in place)
      for (int64_t t = 0; t < p.len; ++t) {
        const int64_t col = p.start + t;
        (transpose ? out[col * k + i] : out[i * n + col]) = acc[size_t(i * p.len + t)];
      }
  });
}

// The data of an ndarray h (nullptr for anything else: checked, and named, by the Args below).
const void* data_of(py::handle h) {
  return py::isinstance<py::array>(h) ? py::reinterpret_borrow<py::array>(h).data() : nullptr;
}

void combine_rows(py::handle C_h, py::handle V_h, py::handle out_h, checks::Flag transpose_arg) {
  const bool transpose = checks::flag(transpose_arg, "transpose");
  const py::dtype dt = float_dtype<HostArrays>(V_h, "V");
  // out = V[:k] in place: V goes in an Args of its own (rows past k, if any, are only read)
  const bool in_place = !transpose && data_of(out_h) != nullptr && data_of(out_h) == data_of(V_h);
  HostArgs args(dt), own(dt);
  const char* V = (in_place ? own : args).get(V_h, "V", -1, false);
  const auto vs = HostArrays::shape(V_h);
  if (vs.size() != 2) throw py::value_error("V: expected a 2-D array (the rows to combine)");
  const int64_t m = vs[0], n = vs[1];
  const char* C = args.get(C_h, "C", -1, false);
  const auto cs = HostArrays::shape(C_h);
  if (cs.size() != 2 || cs[1] != m)
    throw py::value_error("C: expected a 2-D array of shape (k, " + std::to_string(m) + ") (m: V's rows), got " +
                          shape_str(cs));
  const int64_t k = cs[0];
  const std::vector<int64_t> want = transpose ? std::vector<int64_t>{n, k} : std::vector<int64_t>{k, n};
  char* out = args.shaped(out_h, "out", want, true);
  args.check_overlap();
  const bool f32 = dt.equal(py::dtype::of<float>());  // (NumPy's dtype calls need the GIL)
  py::gil_scoped_release nogil;
  if (f32)
    combine(reinterpret_cast<const float*>(C), reinterpret_cast<const float*>(V), reinterpret_cast<float*>(out), k,
            m, n, transpose);
  else
    combine(reinterpret_cast<const double*>(C), reinterpret_cast<const double*>(V), reinterpret_cast<double*>(out),
            k, m, n, transpose);
}

}  // namespace

void register_combine(py::module_& m) { sig::combine(m, &combine_rows); }

}  // namespace optkern
