// penalty_grad_ / penalty_value's checks, written once for optkern._cpu (cpp/regularize.cpp, NumPy
// arrays) and optkern._cuda (cuda/regularize.cu, CuPy arrays), before anything is written: the
// coefficients, and no written array (the grads, the 1-element float64 out) sharing memory with any
// other, params included. (The CPU left out `out`: an out inside a param or a grad took the
// penalty's value in place of that element, where the CUDA module refused it.)
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <utility>

#include "optkern/call_args.hpp"
#include "optkern/dtype_checks.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace regularize_args {
namespace py = pybind11;

// l1 and l2 as real numbers in [0, inf) (the shared checks, with regularize/penalty.py's messages).
inline std::pair<double, double> coeffs(const checks::Real& l1_arg, const checks::Real& l2_arg) {
  const double l1 = checks::real_in("l1", l1_arg, checks::kNonnegative);
  return {l1, checks::real_in("l2", l2_arg, checks::kNonnegative)};
}

// The gradient kernel rounds l1 / l2 to the arrays' dtype: past float32's range they wrote inf and
// NaN (inf * sign(0)) into every float32 grad, where only the Python wrapper refused them.
// `f32`: float32 arrays are written. (The value is summed in float64: no limit there.)
inline void check_rounded(double l1, double l2, bool f32) {
  if (!f32) return;
  checks::check_in_dtype("l1", l1, checks::kRounded, sizeof(float));
  checks::check_in_dtype("l2", l2, checks::kRounded, sizeof(float));
}

// L: the CPU's ArrayList or the GPU's DeviceList. g: null for penalty_value; out: null when not
// given, else its one pointer with size 1.
template <class L> void check_overlap(const L& p, const L* g, const L* out, size_t itemsize) {
  check_overlaps<L>({{"params", &p, false}, {"grads", g, true}, {"out", out, true, true}}, itemsize);
}

// `out` (its pointer, or null) as a one-entry list for check_overlap.
template <class L> L out_list(void* out) {
  L l;
  if (out) {
    l.data.push_back(static_cast<char*>(out));
    l.size.push_back(1);
  }
  return l;
}

}  // namespace regularize_args
}  // namespace optkern
