// The inner step of Lanczos with full reorthogonalization, fused:
//   w <- w - Q_k^T (Q_k w), twice (classical Gram-Schmidt, "CGS2"; once with passes = 1),
//   beta = ||w||, w <- w / beta,
// over the first k rows of a C-contiguous basis Q (rows are the Lanczos
// vectors). Columns are cut into fixed blocks; each block keeps its own
// partial dot products (in double) and they are added in block order, so the
// result is bitwise the same for any thread count. The update of pass 1 and
// the dot products of pass 2 share one sweep over Q (a block's new w depends
// only on the global coefficients and that block), so Q is read three times.
// Q may be float32 with a float64 w (a float32 basis halves the memory and
// the bytes read; products, coefficients and w stay in double). ||w|| of a float64 w near the ends of
// its range is summed again scaled (rules::lanczos_sumsq_direct): a spectrum scaled by 1e+-200 then
// scales with it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "optkern/common.hpp"
#include "optkern/rules/second_order.hpp"
#include "lane_sums.hpp"
#include "linalg_kernels.hpp"
#include "parallel.hpp"
#include "py_arrays.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace {
using namespace linalg;  // (the column-block kernels: linalg_kernels.hpp)

// The same pass for b vectors at once (the rows of W): each column block of Q is read once for all of
// them, not once per vector. Per vector every block partial, every sum in block order and every
// update is the computation cgs2_normalize makes (the same functions on the same spans, rows in
// order), so each row of W gets the bits lanczos_orthogonalize_ gives it alone; a GPU taking the
// vectors one by one agrees. Rows of Q go in groups of kRows (a group's slab of a block stays in L2
// while the vectors pass over it); vectors are independent (no vector is projected on another).

template <class TQ, class T>
void cgs2_normalize_rows(const TQ* Q, int64_t n, int64_t k, T* W, int64_t b, double* C, int64_t ldc, double* betas,
                         int passes) {
  if (b == 0) return;
  const int64_t nb = (n + kBlock - 1) / kBlock, kk = k > 0 ? k : 1;
  std::vector<Chunk> blocks;
  for (int64_t q = 0; q < nb; ++q) blocks.push_back({0, q * kBlock, std::min(kBlock, n - q * kBlock)});
  std::vector<double> part(size_t(nb * kk * b)), c(size_t(kk * b)), nrm(size_t(nb * b));
  const int64_t work = n * (k + 1) * b;
  auto vec = [&](int64_t v) { return W + v * n; };
  auto dots = [&](const Chunk& bl) {  // part[(q * b + v) * k + i] = Q_i . w_v over block q
    double* p = &part[size_t(bl.start / kBlock * b * k)];
    for (int64_t r = 0; r < k; r += kRows)
      for (int64_t v = 0; v < b; ++v)
        block_dots(Q + r * n, n, std::min(kRows, k - r), bl.start, bl.len, vec(v), p + v * k + r);
  };
  auto sum_parts = [&]() {
    for (int64_t v = 0; v < b; ++v)
      for (int64_t i = 0; i < k; ++i) {
        double s = 0.0;
        for (int64_t q = 0; q < nb; ++q) s += part[size_t((q * b + v) * k + i)];
        c[size_t(v * k + i)] = s;
      }
  };
  auto update = [&](const Chunk& bl) {  // per vector rows in order, as block_update takes them
    for (int64_t r = 0; r < k; r += kRows)
      for (int64_t v = 0; v < b; ++v)
        block_update(Q + r * n, n, std::min(kRows, k - r), bl.start, bl.len, &c[size_t(v * k + r)], vec(v));
  };
  if (k > 0) {
    for_each_chunk(blocks, work, dots);  // pass 1: Q w
    sum_parts();
    for (int64_t v = 0; v < b; ++v)
      for (int64_t i = 0; i < k; ++i) C[v * ldc + i] = c[size_t(v * k + i)];
    if (passes == 2) {
      for_each_chunk(blocks, work, [&](const Chunk& bl) {  // pass 1 update, pass 2 dots
        update(bl);
        dots(bl);
      });
      sum_parts();
      for (int64_t v = 0; v < b; ++v)
        for (int64_t i = 0; i < k; ++i) C[v * ldc + i] += c[size_t(v * k + i)];
    }
  }
  for_each_chunk(blocks, work, [&](const Chunk& bl) {  // last pass's update, ||w||^2
    if (k > 0) update(bl);
    for (int64_t v = 0; v < b; ++v) nrm[size_t(bl.start / kBlock * b + v)] = block_norm2(vec(v), bl.start, bl.len);
  });
  std::vector<T> inv(size_t(b), T(0));
  std::vector<char> scaled(size_t(b), 0), direct(size_t(b), 0);
  for (int64_t v = 0; v < b; ++v) {
    double s = 0.0;
    for (int64_t q = 0; q < nb; ++q) s += nrm[size_t(q * b + v)];
    scaled[size_t(v)] = !rules::lanczos_sumsq_direct<T>(s);
    betas[v] = std::sqrt(s);
    direct[size_t(v)] = !scaled[size_t(v)] && betas[v] > 0.0;
    if (direct[size_t(v)]) inv[size_t(v)] = T(1.0 / betas[v]);
  }
  for_each_chunk(blocks, n * b, [&](const Chunk& bl) {
    for (int64_t v = 0; v < b; ++v)
      if (direct[size_t(v)]) block_scale(vec(v), bl.start, bl.len, inv[size_t(v)]);
  });
  std::vector<double> spare(static_cast<size_t>(nb));
  for (int64_t v = 0; v < b; ++v)
    if (scaled[size_t(v)]) betas[v] = scaled_normalize(vec(v), blocks, spare);
}

// What both entry points check first: passes, and Q's and the vectors' dtypes (a float32 Q with
// float64 vectors is allowed, not the reverse). Returns (Q's dtype, the vectors' dtype).
std::pair<py::dtype, py::dtype> checked_dtypes(py::handle Q_h, py::handle w_h, const char* w_name, int passes) {
  if (passes != 1 && passes != 2) throw py::value_error("passes: expected 1 or 2, got " + std::to_string(passes));
  const py::dtype dq = float_dtype<HostArrays>(Q_h, "Q");
  const py::dtype dt = float_dtype<HostArrays>(w_h, w_name);
  if (dq.equal(py::dtype::of<double>()) && dt.equal(py::dtype::of<float>()))
    throw py::type_error(std::string(w_name) + ": expected float64, got float32");
  return {dq, dt};
}

// One entry point's call: checked_dtypes, then Q, a 2-D basis (vectors as rows) with k in [0, rows];
// `args` goes on to collect the vectors' arrays (of the vectors' dtype), and `run` calls the kernel
// on the dtype pair, the one switch over them.
struct BasisCall {
  std::pair<py::dtype, py::dtype> dtypes;  // (Q's, the vectors')
  HostArgs args;
  const char* Q = nullptr;
  int64_t n = 0;  // Q's columns: the vectors' length

  BasisCall(py::handle Q_h, int64_t k, py::handle w_h, const char* w_name, int passes)
      : dtypes(checked_dtypes(Q_h, w_h, w_name, passes)), args(dtypes.second) {
    Q = args.get(Q_h, "Q", dtypes.first, -1, false);
    const auto mn = HostArrays::shape(Q_h);
    if (mn.size() != 2) throw py::value_error("Q: expected a 2-D array (basis vectors as rows)");
    const int64_t m = mn[0];
    if (k < 0 || k > m)
      throw py::value_error("k: must be in [0, " + std::to_string(m) + "] (rows of Q), got " + std::to_string(k));
    n = mn[1];
  }

  // f(const TQ* Q, T* vectors) with the C++ types of the pairs checked_dtypes allows (float32 both, a
  // float32 Q with float64 vectors, float64 both), without the GIL (the dtypes are read before).
  template <class F> auto run(char* vectors, F&& f) const {
    const bool t32 = dtypes.second.equal(py::dtype::of<float>());
    const bool q32 = dtypes.first.equal(py::dtype::of<float>());
    py::gil_scoped_release nogil;
    if (t32) return f(reinterpret_cast<const float*>(Q), reinterpret_cast<float*>(vectors));
    if (q32) return f(reinterpret_cast<const float*>(Q), reinterpret_cast<double*>(vectors));
    return f(reinterpret_cast<const double*>(Q), reinterpret_cast<double*>(vectors));
  }
};

double lanczos_orthogonalize(py::handle Q_h, int64_t k, py::handle w_h, py::handle coeffs_h, int passes) {
  BasisCall call(Q_h, k, w_h, "w", passes);
  const int64_t n = call.n;
  char* w = call.args.shaped(w_h, "w", {n}, true);
  double* cp = call.args.get<double>(coeffs_h, "coeffs", py::dtype::of<double>(), -1, true);
  const auto co = HostArrays::shape(coeffs_h);
  if (co.size() != 1 || co[0] < k)
    throw py::value_error("coeffs: expected a 1-D float64 array with at least k = " + std::to_string(k) +
                          " elements");
  call.args.check_overlap();
  return call.run(w, [&](const auto* Q, auto* wt) { return cgs2_normalize(Q, n, k, wt, cp, passes); });
}

// Q, k and coeffs as lanczos_orthogonalize checks them; W (b, n) rows, coeffs (b, >= k), betas (b).
void lanczos_orthogonalize_rows(py::handle Q_h, int64_t k, py::handle W_h, py::handle coeffs_h, py::handle betas_h,
                                int passes) {
  BasisCall call(Q_h, k, W_h, "W", passes);
  const int64_t n = call.n;
  char* W = call.args.get(W_h, "W", -1, true);
  const auto bn = HostArrays::shape(W_h);
  if (bn.size() != 2 || bn[1] != n)
    throw py::value_error("W: expected a 2-D array of rows of length " + std::to_string(n) + " (Q's columns)");
  const int64_t b = bn[0];
  double* cp = call.args.get<double>(coeffs_h, "coeffs", py::dtype::of<double>(), -1, true);
  const auto co = HostArrays::shape(coeffs_h);
  if (co.size() != 2 || co[0] != b || co[1] < k)
    throw py::value_error("coeffs: expected a 2-D float64 array of shape (" + std::to_string(b) + ", >= " +
                          std::to_string(k) + ") (W's rows, k)");
  double* bp = call.args.get<double>(betas_h, "betas", py::dtype::of<double>(), b, true);
  call.args.check_overlap();
  call.run(W, [&](const auto* Q, auto* Wt) { cgs2_normalize_rows(Q, n, k, Wt, b, cp, co[1], bp, passes); });
}

}  // namespace

void register_linalg(py::module_& m) {
  sig::linalg(m, &lanczos_orthogonalize);
  sig::linalg_rows(m, &lanczos_orthogonalize_rows);
}

}  // namespace optkern
