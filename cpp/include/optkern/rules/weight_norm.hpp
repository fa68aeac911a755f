// Weight norm's formulas and its choice of form for one row, for the OpenMP loop (cpp/norm_weight.cpp)
// and the CUDA kernels (cuda/norm_weight.cu): the formulas first, then which of them keeps a row's
// digits. (rules/norm.hpp: the helpers shared with the other norms, finite_, scale2, GradScale.)
#pragma once

#include "optkern/rules/norm.hpp"

namespace optkern {
namespace rules {

// Whether |a| is below the normal range (0 included).
template <class A> OK_HD bool below_normal(A a) {
  return (a < A(0) ? -a : a) < (sizeof(A) == 4 ? A(0x1p-126) : A(0x1p-1022));
}

// Weight norm, one output row: w = g · v / ‖v‖.  With s = Σ dw ∘ v:
//   dg = s / ‖v‖,  dv = (g / ‖v‖) · (dw - (s / ‖v‖²) · v).
template <class A> OK_HD A weight_norm_scale(A g, A norm) { return g / norm; }
// s / ‖v‖², divided twice: ‖v‖² itself overflows from ‖v‖ ≈ 1.8e19 in float32.
template <class A> OK_HD A weight_norm_k(A s, A norm) { return s / norm / norm; }
template <class A> OK_HD A weight_norm_dv(A dw, A v, A scale, A s_over_norm2) {
  return scale * fma_t(-s_over_norm2, v, dw);
}
// s / ‖v‖² itself still overflows where dv is finite: a subnormal ‖v‖ (float32 v = [1e-40, 2e-40],
// g = 1e-30: k = 6e39) or a large dw (v ~ 1e-9, dw ~ 1e30), and -k v + dw became -inf for every
// element, whatever dv's sign. Then, or when k fell below the normal range (digits lost), the row
// takes (s / ‖v‖) · (v / ‖v‖), each factor in range: a division more per element, on those rows alone.
template <class A> OK_HD bool weight_norm_k_ok(A k, A s, A norm) {
  const A ak = k < A(0) ? -k : k;
  const A tiny = sizeof(A) == 4 ? A(0x1p-126) : A(0x1p-1022);  // the smallest normal
  // (a zero, infinite or NaN norm or s: as before, whatever that gives)
  return (finite_(k) && (ak >= tiny || s == A(0))) || !finite_(s) || !finite_(norm) || norm == A(0);
}
template <class A> OK_HD A weight_norm_dv_scaled(A dw, A v, A scale, A s_over_norm, A norm) {
  return scale * fma_t(-s_over_norm, v / norm, dw);
}

// dw near the max, or v: s = Σ dw v overflows (float32 dw = [1.9e38, 1.9e38, 1.9e38, 0, ...] with v
// ~ 1) where dg = s / ‖v‖ and dv are in range, and dv = scale (dw - k v) came out ±inf everywhere.
// dv is linear in dw and of degree -1 in v, dg linear in dw and of degree 0 in v: a row whose dg or
// dv came out non-finite is computed again from dw 2^-a and v 2^-b (‖v‖ 2^-b; grad_scale of the
// row's largest |dw| and |v|), dg scaled back by 2^a and dv by 2^(a-b), as for the norms' dy (rules/norm.hpp).
// g is scaled too, g 2^-c in [1, 2): g / (‖v‖ 2^-b) from a subnormal g kept g's few digits where dv,
// scaled back by a huge dw's 2^a, is a normal number (float32 g = 1.4e-40, v ~ 1, dw ~ 8e37: 47
// ulps; float64 32 ulps).
template <class A> struct WnScaled {
  A s, norm, scale, k;  // of the scaled row: Σ dw v, ‖v‖, g / ‖v‖ (g 2^-c), s / ‖v‖²
  bool k_ok;
  GradScale sc;
  int c;
};
// From the scaled row's s (Σ scale2(dw, -a) scale2(v, -b)), the unscaled ‖v‖ and g.
// s = Σ dw v below the row's M times the smallest normal: its products fell into (or under) the
// subnormal range and s lost its digits where dg and dv are in range (float64 v ~ 1e-200 and dw ~
// 1e-200: s = 0 and dv of the wrong sign; float32 v = [1e-40, 2e-40], g = 1e-30, dw ~ 1e-3: dv 400
// times too large). Such a row is computed again as the non-finite ones are, but with dw and v
// scaled to [1, 2) up as well as down (grad_scale only scales down; the non-finite rows too: a
// subnormal ‖v‖ left unscaled kept g / ‖v‖ = inf).
template <class A> OK_HD bool weight_norm_s_small(A s, A M) {
  const A as = s < A(0) ? -s : s;
  return as < M * (sizeof(A) == 4 ? A(0x1p-126) : A(0x1p-1022));  // (false for NaN: the plain path's)
}
template <class A> OK_HD int unit_exp(A amax) { return finite_(amax) && amax > A(0) ? scale_exp(amax) : 0; }
template <class A> OK_HD GradScale unit_scale(A max_dw, A max_v) {
  if (!finite_(max_dw) || !finite_(max_v)) return {0, 0};
  return {unit_exp(max_dw), unit_exp(max_v)};
}
template <class A> OK_HD bool is_subnormal(A v) { return v != A(0) && below_normal(v); }
// Whether the redo changes anything: dw or v scaled, or a subnormal g (its scaled quotient keeps
// every digit even where dw and v are in [1, 2) already). Else the plain results stand.
template <class A> OK_HD bool weight_norm_redo_scales(const GradScale& sc, A g) { return scales(sc) || is_subnormal(g); }
// (n: ‖v‖ 2^-b, of the scaled row)
template <class A> OK_HD WnScaled<A> weight_norm_scaled_at(A s, A n, A g, const GradScale& sc) {
  const A k = weight_norm_k(s, n);
  const int c = unit_exp(g < A(0) ? -g : g);  // (0 for g = 0 or non-finite: unscaled, as before)
  return {s, n, weight_norm_scale(scale2(g, -c), n), k, weight_norm_k_ok(k, s, n), sc, c};
}
template <class A> OK_HD WnScaled<A> weight_norm_scaled(A s, A norm, A g, const GradScale& sc) {
  return weight_norm_scaled_at(s, scale2(norm, -sc.b), g, sc);
}
template <class A> OK_HD A weight_norm_dg_scaled(const WnScaled<A>& q) { return scale2(q.s / q.norm, q.sc.a); }
template <class A> OK_HD A weight_norm_dv_rescaled(A dw, A v, const WnScaled<A>& q) {
  const A d = scale2(dw, -q.sc.a), x = scale2(v, -q.sc.b);
  const A r = q.k_ok ? weight_norm_dv(d, x, q.scale, q.k) : weight_norm_dv_scaled(d, x, q.scale, q.s / q.norm, q.norm);
  return scale2(r, q.sc.a - q.sc.b + q.c);
}

// A slice of one element (M = 1: dim=0 of a 1-D v, ...) has w = g sign(v): dv is exactly 0 and dg =
// dw sign(v), where the formula's dw - (s / ‖v‖²) v left rounding noise times g / ‖v‖ (1.2e12 for v =
// 1e-20, g = dw = 1; inf for a subnormal v). Those exact values where dw, g, v are finite and v != 0;
// else the general path (NaN in, NaN out; v = 0: g / ‖v‖ = inf, as before).
template <class A> OK_HD bool weight_norm_single(int64_t M, A dw, A v, A g) {
  return M == 1 && finite_(dw) && finite_(v) && finite_(g) && v != A(0);
}
template <class A> OK_HD A weight_norm_single_dg(A dw, A v) { return v < A(0) ? -dw : dw; }

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
