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
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace cg_args {
namespace py = pybind11;

inline double finite(const char* name, double v) {
  checks::check_real(name, v, checks::kFinite);
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

// hessian.cg's decisions inside one fused iteration (cg_iteration_), made as cg.py makes them from
// the same doubles, so that it can tell from the returned sums what the pass did:
// the step alpha = rz / p.Ap is taken when p.Ap is finite, positive (or any sign when the solve
// goes on through negative curvature) and the step finite; else nothing is written.
inline bool cg_step(double pAp, double rz, bool stop_on_negative_curvature, double& alpha) {
  if (!std::isfinite(pAp) || (!(pAp > 0.0) && stop_on_negative_curvature)) return false;
  alpha = pAp != 0.0 ? rz / pAp : INFINITY;
  return std::isfinite(alpha);
}

// The next direction p = r + beta p, beta = r.r / rz, is taken while ||r|| = sqrt(r.r) > tol (not
// converged; cg.py compares math.sqrt(rr) <= tol, the same correctly rounded sqrt) and beta is
// finite (else cg.py's cg_direction_ call refuses it, naming beta).
inline bool cg_next(double rr, double rz, double tol, double& beta) {
  if (std::sqrt(rr) <= tol) return false;
  beta = rr / rz;
  return std::isfinite(beta);
}

}  // namespace cg_args
}  // namespace optkern
