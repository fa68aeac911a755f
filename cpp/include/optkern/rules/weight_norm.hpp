// Weight norm's choice of form for one row, for the OpenMP loop (cpp/norm_weight.cpp) and the CUDA
// kernels (cuda/norm_weight.cu). The formulas themselves are in rules/norm.hpp (weight_norm_scale,
// weight_norm_k, weight_norm_dv, ...); these say which of them keeps a row's digits.
#pragma once

#include "optkern/rules/norm.hpp"

namespace optkern {
namespace rules {

// Whether |a| is below the normal range (0 included).
template <class A> OK_HD bool below_normal(A a) {
  return (a < A(0) ? -a : a) < (sizeof(A) == 4 ? A(0x1p-126) : A(0x1p-1022));
}

// Forward: whether w = scale · v, with scale = g / ‖v‖ formed once for the row, keeps w's digits.
// Not where scale overflowed (g near the max) nor where it fell below the normal range (‖v‖ near the
// max and g small: float32 v ~ 3e37, g = 1e-3 gave scale 2.5e-41, 17 bits, and w -- a normal
// number -- 32 ulps off; float64 v ~ 3e307, 582 ulps). Those rows take g · (v / ‖v‖), each factor in
// range. (A non-finite ‖v‖ keeps the one form: w is NaN either way.) Backward: such a row is redone
// scaled (weight_norm_scaled, from g / (‖v‖ 2^-b)), as rows with non-finite results are: dv = scale ·
// (dw - k v) kept scale's few digits (float32 v = [3e37, 1e-10, 2.5], g = 1.2e-3, dw = [1, 1e6,
// -3.3e6]: dv ~ 1e-34, 150 ulps off). A scale that underflowed to 0 from a nonzero g is one of them
// (float32 g = -4e-39, a subnormal, and ‖v‖ = 1.9e10: w = 0 where it is [1e-40, 4.04e-39]).
template <class A> OK_HD bool weight_norm_scale_ok(A scale, A g, A norm) {
  return (finite_(scale) && !(below_normal(scale) && g != A(0))) || !finite_(norm);
}

// Backward: whether a row is computed scaled (weight_norm_scaled: dw 2^-a, v 2^-b, ‖v‖ 2^-b, all in
// range) from the start, as rows with non-finite results are afterwards:
// - g / ‖v‖ out of the normal range (weight_norm_scale_ok above);
// - a subnormal saved ‖v‖, which kept few digits (float32 v = [1.4e-43, -1.4e-43]: ‖v‖ 0.3 % off, and
//   dg = s / ‖v‖ and dv with it; the scaled row takes ‖v‖ 2^-b from v 2^-b, as the forward does);
// - k = s / ‖v‖² out of range (weight_norm_k_ok false) with s / ‖v‖ below the normal range too: the
//   dv_scaled form's factor (float32 v ~ 1e20, g = 1e30, dw ~ 1e-40: s / ‖v‖ ~ 1e-41, and dv ~
//   2e-31, 69 ulps off), or 0 (float64 dw of a few subnormal steps: dv's v term dropped). (s is
//   finite and nonzero where k is not ok, and ‖v‖ finite and nonzero: s / ‖v‖ is finite.)
template <class A> OK_HD bool weight_norm_bwd_scaled(A scale, A g, A norm, bool k_ok, A s_over_norm) {
  return !weight_norm_scale_ok(scale, g, norm) || is_subnormal(norm) || (!k_ok && below_normal(s_over_norm));
}

}  // namespace rules
}  // namespace optkern
