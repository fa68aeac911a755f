// Real arguments against the arrays' dtype, shared by optkern._cpu and optkern._cuda. The rules
// round most hyper-parameters to the arrays' dtype T: a value in range as a double could still be
// inf there (lr = 1e39 on float32 params wrote inf * 0 = NaN), round to 0 where it divides
// (eps = 1e-50: 0 / 0 where a gradient is 0) or round a beta to 1. Only the Python layer refused
// these (optim/_hyper.py: _check_dtype_fields); a direct native call wrote NaN. The checks and
// their messages are the Python layer's, so a value refused there and here reads the same
// (tests/test_hunt50a_native_checks.py pins that they agree, value by value).
//
// torch accepts eps = 1e-50 with float32 params and rounds it to 0 in the same way (its step is
// then NaN wherever a gradient and its moments are 0): we refuse such a value instead, before
// anything is written.
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <limits>
#include <string>

#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace checks {

// How a rule uses a real argument in the arrays' dtype (one entry per argument, beside its range).
enum InDtype : unsigned {
  kInDouble = 0,       // used in double only (lr_decay, momentum_decay), or a bool
  kRounded = 1,        // rounded to T: must be finite there
  kDivisor = 2 | 1,    // rounded and divided by (eps, a bias correction): must not round to 0
  kScale = 4 | 1,      // rounded and multiplied with other scales and squared data (lr, weight_decay,
                       // momentum): below max ** (1/4) of float32 (for T below float64) or float64,
                       // where such products of moderate data stay finite wherever float64's are
  kMomentumBeta = 8 | 1,  // NAdam's beta1: its momentum product lives in T, and a beta1 that rounds to
                          // 1 there makes the bias correction 1 - mu_product 0
};

// t * momentum_decay past which NAdam's 1 - 0.96^(t momentum_decay) / 2 rounds to 1 in a dtype of
// `mantissa` explicit bits (optim/_hyper.py: _mu_rounds_to_one).
inline double mu_rounds_to_one(int mantissa) { return (mantissa + 1) * std::log(2.0) / -std::log(0.96); }

inline std::string format(const char* spec, double v) { return py::str(spec).format(v).cast<std::string>(); }

// max ** (1/4) of float32 (f32) or float64: kScale's bound (the Python layer's _F32_SCALE_MAX, _F64_SCALE_MAX).
inline double scale_bound(bool f32) {
  static const double b32 = std::pow(double(std::numeric_limits<float>::max()), 0.25);
  static const double b64 = std::pow(std::numeric_limits<double>::max(), 0.25);
  return f32 ? b32 : b64;
}

// ValueError naming `name` unless `v` (already in its range) works as `how` says in the arrays'
// dtype: float32 where `itemsize` is 4, float64 where it is 8. (Nothing is formatted unless it fails.)
// `whose`: why the value meets that dtype, where not as the arrays' (float32_lr's float32 lr).
template <class Name>
void check_in_dtype(const Name& name, double v, unsigned how, size_t itemsize, const char* whose = "the arrays' dtype") {
  if (how == kInDouble) return;
  const bool f32 = itemsize < 8;
  const double r = f32 ? double(static_cast<float>(v)) : v;
  const auto fail = [&](const std::string& why) {
    throw py::value_error(name_of(name) + ": " + repr(v) + why);
  };
  const auto dtn = [f32] { return std::string(f32 ? "float32" : "float64"); };
  if (!finite_in(v, f32)) fail(" is not finite in " + dtn() + " (" + whose + ")");
  if ((how & kScale & ~kRounded) && std::fabs(v) > scale_bound(f32))
    fail(" is above " + format("{:.4g}", scale_bound(f32)) + " (" + dtn() + "'s max ** (1/4)), the largest value a " +
         dtn() + " step keeps finite");
  if ((how & kMomentumBeta & ~kRounded) && !(r < 1.0))
    fail(" rounds to 1 in " + dtn() + " (the arrays' dtype), where NAdam's momentum factor mu_t = beta1 (1 - " +
         "0.96^(t momentum_decay) / 2) then rounds to 1 once t * momentum_decay passes about " +
         format("{:.1f}", mu_rounds_to_one(f32 ? 23 : 52)) + ": a momentum product still 1 (the first step, or a " +
         "loaded state's) then makes the step divide by 1 - mu_product = 0; the largest usable value is " +
         repr(f32 ? double(std::nextafter(1.0f, 0.0f)) : std::nextafter(1.0, 0.0)));
  if ((how & kDivisor & ~kRounded) && !(r > 0.0))
    fail(" rounds to 0 in " + dtn() + " (the arrays' dtype); the smallest usable value is " +
         repr(f32 ? double(std::numeric_limits<float>::denorm_min()) : std::numeric_limits<double>::denorm_min()));
}

}  // namespace checks
}  // namespace optkern
