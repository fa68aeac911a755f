// The checks of hessian.cg's vector passes (cg_curvature, cg_update_, cg_direction_), written
// once for optkern._cpu (cpp/cg.cpp, NumPy arrays) and optkern._cuda (cuda/cg.cu, CuPy arrays),
// before anything is written: one float dtype (the first vector's), 1-D vectors of the first's
// length, each named as passed ("y: expected shape (3,), got (3, 1)"; the CUDA module named a
// vector as the one-array list it made of it, "y[0]", and took a (3, 1) y for 3 elements), no
// written vector sharing memory with another, finite scalars.
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "optkern/call_args.hpp"

namespace optkern {
namespace cg_args {
namespace py = pybind11;

inline double finite(const char* name, double v) {
  if (!std::isfinite(v)) throw py::value_error(std::string(name) + ": must be finite, got " + std::to_string(v));
  return v;
}

// The checked vectors of one call (Arrays: HostArrays or DeviceArrays); `first` fixes the dtype
// and the length n. args.check_overlap() before the first write.
template <class Arrays> struct Vectors {
  typename Arrays::DType dt;
  Args<Arrays> args;
  int64_t n = 0;

  Vectors(py::handle first, const char* name) : dt(float_dtype<Arrays>(first, name)), args(dt) {
    const auto shape = Arrays::shape(first);
    if (shape.size() != 1) throw py::value_error(std::string(name) + ": expected a 1-D array");
    n = shape[0];
  }

  // A vector of n elements (1-D); its data.
  char* add(py::handle h, const char* name, bool written) { return args.shaped(h, name, {n}, written); }
};

}  // namespace cg_args
}  // namespace optkern
