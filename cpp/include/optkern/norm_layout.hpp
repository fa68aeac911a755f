// The layouts the CPU and CUDA normalizations take as sizes, checked against x's element count
// once for both modules. Rows: x is (R, M) with M = Cg * S, row r uses the affine entries
// (r % G) * Cg + j / S; channels: x is (N, C, S); weight norm: v is (rows, M).
#pragma once
#include <pybind11/pybind11.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "optkern/scalar_checks.hpp"

namespace optkern {

// The forwards' eps (row norms, channel statistics), checked before anything is read: > 0 and
// finite, and where the statistics are float32 (`f32_stats`: float32 and half x) finite and
// nonzero there, as the Python layer checks it (norm/_common.py: _eps, the same messages). NaN
// wrote NaN into every output; inf (torch takes it: rstd 0, y = bias, zero input gradients) and an
// eps past float32's max became inf in the row kernels (y = bias) but not in the channel ones,
// which add it in double (y ~ 1e-20 x); one that rounds to 0 in float32 divides a constant row by
// a zero variance. Refused, as a hyper-parameter not finite in the arrays' dtype is.
inline void check_norm_eps(double eps, bool f32_stats) {
  if (!std::isfinite(eps)) throw pybind11::value_error("eps: must be finite, got " + checks::repr(eps));
  if (!(eps > 0.0)) throw pybind11::value_error("eps: must be > 0, got " + checks::repr(eps));
  if (!f32_stats) return;
  // (the largest double that rounds to a finite float32: FLT_MAX plus half its last step, less one ulp)
  static const double kMaxRounded = std::nextafter(double(FLT_MAX) + std::ldexp(1.0, 103), 0.0);
  if (eps > kMaxRounded)
    throw pybind11::value_error("eps: " + checks::repr(eps) + " overflows float32 (the statistics' dtype); at most " +
                                checks::repr(double(FLT_MAX)));
  if (static_cast<float>(eps) == 0.0f)
    throw pybind11::value_error("eps: " + checks::repr(eps) +
                                " rounds to 0 in float32 (the statistics' dtype); the smallest usable value is " +
                                checks::repr(double(std::nextafter(0.0f, 1.0f))));
}

// The product of `sizes` (each >= 0), or -1 where it passes int64. A product that wrapped could
// equal an array's size and pass the check against it: channel_stats with N = 2, C = 2,
// S = 2**62 + 1 on a 4-element x (2**64 + 4 wrapped to 4) ran its kernels past x (a segfault).
inline int64_t layout_product(std::initializer_list<int64_t> sizes) {
  int64_t n = 1;
  for (int64_t s : sizes) {
    if (s != 0 && n > INT64_MAX / s) return -1;
    n *= s;
  }
  return n;
}

// ValueError "x: expected <formula> = n elements, got size" unless the product `n` (-1: past
// int64) is `size`.
inline void check_layout_size(const char* what, const char* formula, int64_t n, int64_t size) {
  if (n == size) return;
  throw pybind11::value_error(std::string(what) + ": expected " + formula + " = " +
                              (n < 0 ? std::string("more than 2**63") : std::to_string(n)) + " elements, got " +
                              std::to_string(size));
}

struct RowLayout {
  int64_t R, G, Cg, S;
  int64_t M() const { return Cg * S; }
  int64_t W() const { return G * Cg; }
};

// The layout the Python call asks for, checked against x's element count.
inline RowLayout row_layout(int64_t size, int64_t rows, int64_t groups, int64_t group_channels, int64_t spatial) {
  namespace py = pybind11;
  if (rows < 0 || groups < 1 || group_channels < 1 || spatial < 1)
    throw py::value_error("row layout: rows >= 0, groups, group_channels, spatial >= 1 required");
  if (rows % groups != 0) throw py::value_error("row layout: rows must be a multiple of groups");
  // (and every product a kernel forms: M = Cg * S, W = G * Cg, with rows 0 too)
  const bool fits = layout_product({groups, group_channels, spatial}) >= 0;
  check_layout_size("x", "rows * group_channels * spatial",
                    fits ? layout_product({rows, group_channels, spatial}) : -1, size);
  return {rows, groups, group_channels, spatial};
}

// The channel layout (N, C, S) of an x of `size` elements (N * S, N * C: the kernels' products).
inline void check_channel_layout(int64_t size, int64_t N, int64_t C, int64_t S) {
  if (N < 0 || C < 1 || S < 1) throw pybind11::value_error("shape: N >= 0, C >= 1, S >= 1 required");
  check_layout_size("x", "N * C * S", layout_product({C, S}) >= 0 ? layout_product({N, C, S}) : -1, size);
}

// Weight norm's v: `rows` rows of M elements.
inline void check_weight_rows(int64_t size, int64_t rows, int64_t M) {
  if (rows < 0 || M < 1) throw pybind11::value_error("v: rows >= 0 and M >= 1 required");
  check_layout_size("v", "rows * M", layout_product({rows, M}), size);
}

}  // namespace optkern
