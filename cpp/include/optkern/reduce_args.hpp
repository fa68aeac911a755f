// The scalar checks of the reductions and gradient transforms (grad_norm, clip_scale_, clamp_), written once for
// optkern._cpu (cpp/reduce.cpp) and optkern._cuda (cuda/reduce.cu): the same refusals with the same
// messages, before any array is read or written.
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "optkern/rules/clip.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace reduce_args {
namespace py = pybind11;

// The largest finite p the kernels take: each term |x 2^-e|^p is below 2^p (rules/pnorm.hpp) and
// a list holds fewer than 2^63 of them, so their sum stays below 2^1023. Past it the sum overflowed:
// an inf norm (p = 1100, |x| = 1.99: a norm of 1.99 came out inf). optkern.clip takes larger p
// itself, scaled by max |x| (_clip_global.py).
constexpr double kMaxFiniteNormType = 960.0;

// p in [1, kMaxFiniteNormType] or +inf (NaN and -inf refused); true for +inf (the max norm).
inline bool check_norm_type(double p) {
  if (!(p >= 1.0)) throw py::value_error("norm_type: must be >= 1 or inf, got " + checks::repr(p));
  if (std::isinf(p)) return true;
  if (p > kMaxFiniteNormType)
    throw py::value_error("norm_type: must be at most " + std::to_string(int(kMaxFiniteNormType)) +
                          " or inf here (the sum of |x|^p scaled by a power of two overflows past it), got " +
                          checks::repr(p));
  return false;
}

// A finite p >= 1 (grad_norm_parts, grad_norm_finish: the inf norm, a max, has no partial sums).
inline void check_finite_norm_type(double p) {
  if (check_norm_type(p))
    throw py::value_error("norm_type: expected a finite p >= 1 (the inf norm has no partial sums), got inf");
}

// clip_scale_'s max_norm: >= 0 or inf. A negative one made a negative factor (every array's sign
// flipped: an ascent step) and a NaN one NaN arrays, silently.
inline void check_max_norm(double v) {
  if (!(v >= 0.0)) throw py::value_error("max_norm: must be >= 0 or inf, got " + checks::repr(v));
}

inline void check_clip_value(double v) {
  if (!(v >= 0.0)) throw py::value_error("clip_value: must be >= 0, got " + checks::repr(v));
}

// clip_scale_'s norm_dtype: the dtype of the norm the factor is computed in ("" the grads').
inline rules::NormDtype norm_dtype_of(const std::string& name) {
  if (name.empty()) return rules::NormDtype::grads;
  if (name == "float64") return rules::NormDtype::f64;
  if (name == "float32") return rules::NormDtype::f32;
  if (name == "float16") return rules::NormDtype::f16;
  if (name == "bfloat16") return rules::NormDtype::bf16;
  throw py::value_error("norm_dtype: expected '', 'float64', 'float32', 'float16' or 'bfloat16', got '" + name + "'");
}

}  // namespace reduce_args
}  // namespace optkern
