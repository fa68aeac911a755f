// hessian.cg's update one parameter slice at a time, while a product's backward pass hands over
// the slices of y = A p (the MLP's Gauss-Newton product, hessian.from_mlp: its p.A p is known
// after the forward pass, so the step alpha is known before y is): x += alpha p,
// r -= alpha (y + lambda p) and the slice's r.r, with y's slice still in cache and y never
// written out as a whole vector (nor read back from memory by a separate pass). Once every slice
// is in, r.r is complete: p = r + beta p with p.p (cg_direction_sum_). The loops are cg.cpp's
// (cg_loops.hpp): the same x and r bits as cg_iteration_known_ for the same y and alpha.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cg_loops.hpp"
#include "optkern/scalar_checks.hpp"
#include "optkern/named_reals.hpp"

namespace optkern {
namespace {

// A weight gradient arrives as the transpose of a C-contiguous (cols, rows) product (the GEMM's
// faster shape, nn/_gemm.py): the slice's row o is that array's column o. kRowBlock of its rows
// are staged into a small buffer (one cache line of the product per column read, in L1 / L2)
// and go through the contiguous update from there.
constexpr int64_t kRowBlock = 16;

// (__builtin_shufflevector: GCC >= 12 and Clang; an older GCC stages every row by the plain copy)
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define OPTKERN_STAGE_TILES 1
using v8f = float __attribute__((vector_size(32)));
#endif

// Rows o0 + [0, m) of the slice into buf (m x cols), float: 8 x 8 tiles transposed in registers (8
// loads, 24 shuffles, 8 stores), where the element-by-element copy stored one float at a time, 8 to
// 16 cache lines apart: 62 -> 36 us a 784 x 256 slice, one thread (the update's staging was 83 of
// its 136 us). Returns the rows staged (a multiple of 8; the caller copies the rest).
#if defined(OPTKERN_STAGE_TILES)
OK_CLONES int64_t stage_tiles(const float* OK_RESTRICT yt, int64_t rows, int64_t cols, int64_t o0, int64_t m,
                              float* OK_RESTRICT buf) {
  int64_t o = 0;
  for (; o + 8 <= m; o += 8) {
    int64_t i = 0;
    for (; i + 8 <= cols; i += 8) {
      v8f a[8], t[8], u[8];  // a[k]: column i + k's 8 values of rows o..o+7
      for (int k = 0; k < 8; ++k) std::memcpy(&a[k], yt + (i + k) * rows + o0 + o, sizeof(v8f));
      for (int k = 0; k < 8; k += 2) {
        t[k] = __builtin_shufflevector(a[k], a[k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[k + 1] = __builtin_shufflevector(a[k], a[k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
      }
      for (int k = 0; k < 8; k += 4) {
        u[k] = __builtin_shufflevector(t[k], t[k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[k + 1] = __builtin_shufflevector(t[k], t[k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        u[k + 2] = __builtin_shufflevector(t[k + 1], t[k + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        u[k + 3] = __builtin_shufflevector(t[k + 1], t[k + 3], 2, 3, 10, 11, 6, 7, 14, 15);
      }
      for (int j = 0; j < 4; ++j) {  // row o + j: columns i..i+7 (and row o + j + 4)
        const v8f lo = __builtin_shufflevector(u[j], u[j + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        const v8f hi = __builtin_shufflevector(u[j], u[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        std::memcpy(buf + (o + j) * cols + i, &lo, sizeof(v8f));
        std::memcpy(buf + (o + j + 4) * cols + i, &hi, sizeof(v8f));
      }
    }
    for (; i < cols; ++i)
      for (int64_t k = 0; k < 8; ++k) buf[(o + k) * cols + i] = yt[i * rows + o0 + o + k];
  }
  return o;
}
#endif

template <class T>
void stage_rows(const T* OK_RESTRICT yt, int64_t rows, int64_t cols, int64_t o0, int64_t m, T* OK_RESTRICT buf) {
  int64_t done = 0;
#if defined(OPTKERN_STAGE_TILES)
  if constexpr (std::is_same_v<T, float>) done = stage_tiles(yt, rows, cols, o0, m, buf);
#endif
  for (int64_t i = 0; i < cols; ++i) {
    const T* src = yt + i * rows + o0;
    for (int64_t o = done; o < m; ++o) buf[o * cols + i] = src[o];
  }
}

// Each call's own table of timings (cg_threads.hpp): they are of other sizes and costs than the
// whole-vector iteration's.
ThreadChoice& update_choice() {
  static ThreadChoice& c = site_choice("update_slice");
  return c;
}
ThreadChoice& direction_choice() {
  static ThreadChoice& c = site_choice("direction_sum");
  return c;
}

double cg_update_slice(py::handle x_h, py::handle r_h, py::handle p_h, py::handle y_h, double alpha, double damping,
                       checks::Flag transposed_arg) {
  const bool transposed = checks::flag(transposed_arg, "transposed");
  Vectors v(x_h, "x");
  char* x = v.add(x_h, "x", true);
  char* r = v.add(r_h, "r", true);
  const char* p = v.add(p_h, "p", false);
  const char* y = v.args.get<char>(y_h, "y", v.dt, -1, false);
  const auto shape = HostArrays::shape(y_h);
  if (!transposed && shape != std::vector<int64_t>{v.n})
    throw py::value_error("y: expected shape (" + std::to_string(v.n) + ",), got " + shape_str(shape));
  if (transposed && (shape.size() != 2 || shape[0] * shape[1] != v.n))
    throw py::value_error("y: expected a 2-D array of " + std::to_string(v.n) + " elements, got " + shape_str(shape));
  finite("alpha", alpha);
  finite("damping", damping);
  v.args.check_overlap();
  const int64_t cols = transposed ? shape[0] : 1, rows = transposed ? shape[1] : v.n;
  return by_dtype(v.dt, [&](auto tag) {
    using T = decltype(tag);
    T* xt = reinterpret_cast<T*>(x);
    T* rt = reinterpret_cast<T*>(r);
    const T* pt = reinterpret_cast<const T*>(p);
    const T* yt = reinterpret_cast<const T*>(y);
    const T a = T(alpha), lambda = T(damping);
    // (transposed: a chunk is whole rows of the slice, kRowBlock of them)
    const auto chunks = make_chunks({v.n}, transposed ? std::max<int64_t>(1, kRowBlock * cols) : kChunk);
    const auto part = [&](const Chunk& c) {
      const int64_t lo = c.start;
      if (!transposed) return update_loop<T>(xt + lo, rt + lo, pt + lo, yt + lo, a, lambda, c.len);
      thread_local std::vector<T> buf;
      buf.resize(size_t(c.len));
      stage_rows<T>(yt, rows, cols, lo / cols, c.len / cols, buf.data());
      return update_loop<T>(xt + lo, rt + lo, pt + lo, buf.data(), a, lambda, c.len);
    };
    py::gil_scoped_release nogil;
    // (the threads timed as for the whole-vector iteration: a region's wake-up after the product's
    // GEMMs can cost more than a slice's update)
    return chosen_threads(update_choice(), chunks.size(), v.n, 5,
                          [&](int64_t work) { return reduce_chunks(chunks, work, part); });
  });
}

double cg_direction_sum(py::handle p_h, py::handle z_h, double beta) {
  Vectors v(p_h, "p");
  char* p = v.add(p_h, "p", true);
  const char* z = v.add(z_h, "z", false);
  finite("beta", beta);
  return by_dtype(v.dt, [&](auto tag) {
    using T = decltype(tag);
    const auto f = [&](int64_t lo, int64_t len) {  // (over cg_curvature's chunks: its bits)
      return direction_sum_loop<T>(reinterpret_cast<T*>(p) + lo, reinterpret_cast<const T*>(z) + lo, T(beta), len);
    };
    return v.sum(3, f, &direction_choice());
  });
}

}  // namespace

void register_cg_slices(py::module_& m) {
  def_named(m, "cg_update_slice_", &cg_update_slice, py::arg("x"), py::arg("r"), py::arg("p"), py::arg("y"),
        py::arg("alpha"), py::arg("damping"), py::arg("transposed") = false,
        "CG's update on one slice of the vectors: x += alpha p, r -= alpha (y + damping p); returns the "
        "slice's r.r (float64, deterministic). y: the slice of A p, 1-D like x, or with transposed=True "
        "a C-contiguous 2-D array whose transpose, read in C order, is the slice.");
  def_named(m, "cg_direction_sum_", &cg_direction_sum, py::arg("p"), py::arg("z"), py::arg("beta"),
        "p = z + beta p; returns p.p of the new p (float64, cg_curvature(p, p, 0)'s bits).");
}

}  // namespace optkern
