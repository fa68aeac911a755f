// Weight norm's choice of form for one row, for the OpenMP loop (cpp/norm_weight.cpp) and the CUDA
// kernels (cuda/norm_weight.cu). The formulas themselves are in rules/norm.hpp (weight_norm_scale,
// weight_norm_k, weight_norm_dv, ...); these say which of them keeps a row's digits.
#pragma once

#include "optkern/rules/norm.hpp"

namespace optkern {
namespace rules {

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
  const A a = scale < A(0) ? -scale : scale;
  const bool lost = a < (sizeof(A) == 4 ? A(0x1p-126) : A(0x1p-1022)) && g != A(0);
  return (finite_(scale) && !lost) || !finite_(norm);
}
template <class A> OK_HD bool weight_norm_scale_ok(A scale, A norm) {  // TEMP (emulator build in flight)
  return (finite_(scale) && !is_subnormal(scale)) || !finite_(norm);
}

// Backward: whether a row whose k = s / ‖v‖² was out of range (weight_norm_k_ok false) is redone
// scaled (weight_norm_scaled), as rows with non-finite results are. Its dv_scaled form uses
// s / ‖v‖, itself below the normal range where dw is tiny (float32 v ~ 1e20, g = 1e30, dw ~ 1e-40:
// s / ‖v‖ ~ 1e-41, and dv ~ 2e-31, a normal number, 69 ulps off), or even 0 (float64 dw of a few
// subnormal steps: the v term of dv dropped); the scaled row keeps every digit. (s is finite and
// nonzero where k is not ok, and ‖v‖ finite and nonzero: s / ‖v‖ is finite.)
template <class A> OK_HD bool weight_norm_redo_sn(bool k_ok, A s_over_norm) {
  const A a = s_over_norm < A(0) ? -s_over_norm : s_over_norm;
  return !k_ok && a < (sizeof(A) == 4 ? A(0x1p-126) : A(0x1p-1022));
}

}  // namespace rules
}  // namespace optkern
