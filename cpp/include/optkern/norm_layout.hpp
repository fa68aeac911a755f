// Row layout shared by the CPU and CUDA row normalizations: x is (R, M) with
// M = Cg * S, row r uses the affine entries (r % G) * Cg + j / S.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace optkern {

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
  if (rows * group_channels * spatial != size)
    throw py::value_error("x: expected rows * group_channels * spatial = " +
                          std::to_string(rows * group_channels * spatial) + " elements, got " + std::to_string(size));
  return {rows, groups, group_channels, spatial};
}

}  // namespace optkern
