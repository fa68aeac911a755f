// The math of the second-order optimizers and the curvature solvers, written once for the host loops
// (cpp/lbfgs.cpp, cpp/sam.cpp, cpp/cg.cpp, cpp/linalg.cpp) and the CUDA kernels (cuda/lbfgs.cu,
// cuda/sam.cu, cuda/cg.cu, cuda/linalg.cu).
//
// L-BFGS in coefficient space ("vector-free" L-BFGS, Chen, Yin, Li & Gao 2014): the two-loop
// recursion of torch.optim.LBFGS,
//     q = -g;  for i = k-1..0:  al_i = ro_i s_i.q;  q -= al_i y_i
//     r = H q; for i = 0..k-1:  be_i = ro_i y_i.r;  r += (al_i - be_i) s_i;   d = r,
// is linear in g, s_i, y_i, so every dot product it takes is a combination of the inner
// products s_i.y_j, y_i.y_j, s_i.g, y_i.g. Those are kept (Gram matrices, updated by one
// pass when a pair is added); the recursion then runs on k numbers and the direction is one
// pass  d = -H g + sum_j (-H al_j) y_j + (al_j - be_j) s_j  -- two passes over the history per
// step instead of 4k.
#pragma once
#include <cmath>  // (NAN)
#include <cstdint>

#include "optkern/common.hpp"
#include "optkern/rules/norm.hpp"
#include "optkern/rules/rounding.hpp"

namespace optkern {
namespace rules {

// The two-loop recursion on inner products. History rows 0..k-1, oldest first:
//   sy[i*k + j] = s_i.y_j,  yy[i*k + j] = y_i.y_j,  sg[i] = s_i.g,  yg[i] = y_i.g,  ro[i] = 1 / s_i.y_i,
//   h = the initial inverse-Hessian scale (H_diag).
// Out: al[i] (torch's `al`), and d = g_scale * g + sum_j cy[j] y_j + cs[j] s_j.
// Returns g_scale (= -h). Its multiply-adds are explicit fmas, like every rule's (rounding.hpp).
OK_HD double lbfgs_two_loop(int64_t k, const double* sy, const double* yy, const double* sg, const double* yg,
                            const double* ro, double h, double* al, double* cs, double* cy) {
  for (int64_t i = k - 1; i >= 0; --i) {  // s_i.q with q = -g - sum_{j>i} al_j y_j
    double sq = -sg[i];
    for (int64_t j = i + 1; j < k; ++j) sq = fma_t(-al[j], sy[i * k + j], sq);
    al[i] = sq * ro[i];
  }
  for (int64_t i = 0; i < k; ++i) {  // y_i.r with r = h (-g - sum_j al_j y_j) + sum_{j<i} (al_j - be_j) s_j
    double yq = -yg[i];
    for (int64_t j = 0; j < k; ++j) yq = fma_t(-al[j], yy[i * k + j], yq);
    double yr = h * yq;
    for (int64_t j = 0; j < i; ++j) yr = fma_t(cs[j], sy[j * k + i], yr);
    cs[i] = fma_t(-yr, ro[i], al[i]);
  }
  for (int64_t j = 0; j < k; ++j) cy[j] = -h * al[j];
  return -h;
}

// The direction pass: d starts at g_scale g (one product) and adds the history pairs row by row,
// oldest first, each as two axpys d += cy_j y_j, d += cs_j s_j (torch's two-loop adds every row
// with add_(alpha=...): an fma each). The CPU's and the GPU's d are the same bits.
template <class T> OK_HD T direction_start(T g_scale, T g) { return g_scale * g; }
template <class T> OK_HD T direction_add(T d, T cy, T y, T cs, T s) { return fma_t(cs, s, fma_t(cy, y, d)); }

// max |x| of lbfgs_stats (g) and of the direction (d): NaN-sticky, and then the one quiet NaN
// (0x7ff8...: no sign, no payload) whichever NaN was met. The CPU's SIMD max keeps a NaN flag beside
// the max and writes abs_max_nan(); the GPU's tree took |x| of the NaN it met (its sign cleared,
// its payload kept): other bits than the CPU's for a NaN with a payload. Combining two partial
// maxes: abs_max_step(a, b) for b >= 0 or canonical NaN, the same rule.
OK_HD double abs_max_nan() { return double(NAN); }
OK_HD double abs_max_step(double m, double x) {
  const double a = x < 0.0 ? -x : x;
  return a != a ? abs_max_nan() : (a > m ? a : m);  // (m NaN: a > m is false, m stays)
}

// The dot products the push pass returns, per history row j (kPushPerRow of them) and for the
// new pair itself (kPushSelf), in this order.
enum PushDot { kSnewYj = 0, kYnewSj, kYnewYj, kGSj, kGYj, kPushPerRow };
enum PushSelf { kYS = 0, kYY, kGS, kGY, kPushSelf };

// Each pass below rounds where its reference rounds (rounding.hpp), so its bits do not depend on
// the compiler, the ISA clone or the device: CPU and GPU agree bit for bit.

// Parameter move of the line search: p = x + t d, torch's add_(d, alpha=t) -- one fma.
template <class T> OK_HD T move(T x, T d, T t) { return fma_t(t, d, x); }

// SAM's ascent step: remember w, go to w + scale g with scale = rho / (||g|| + eps), rounded like
// the reference implementations' p.add_(g * scale) and NumPy's w + scale * g: the product, then
// the sum.
template <class T> OK_HD void sam_perturb(T& p, T g, T& backup, T scale) {
  backup = p;
  p = scaled_plus(scale, g, p);
}

// Adaptive SAM (ASAM, Kwon et al. 2021): the ascent direction scaled element-wise by w^2,
// w += scale (w^2 g), rounded as the reference's  (w^2 g) scale, then the add  (scale from the
// norm of |w| g instead of g: sam_norm_term).
template <class T> OK_HD void sam_perturb_adaptive(T& p, T g, T& backup, T scale) {
  backup = p;
  p = scaled_plus(scale, (p * p) * g, p);
}

// T's normal range [lo, hi] (float32, float64).
template <class T> OK_HD T normal_lo() { return sizeof(T) == 4 ? T(0x1p-126f) : T(0x1p-1022); }
template <class T> OK_HD T normal_hi() { return sizeof(T) == 4 ? T(0x1.fffffep127f) : T(0x1.fffffffffffffp1023); }

// Whether that rounding, in the params' dtype T, keeps the step's digits: w^2 and w^2 g in T's normal
// range (or g = 0 beside a finite w^2). Else -- w^2 below it (float64 |w| < 2^-511, float32 |w| <
// 2^-63: a few bits, or 0), w^2 g below it (w 1e-150, g 1e-30) or past it (w 1e100, g 1e150: inf;
// float64 w 1e200 or float32 w 1e20: w^2 inf, and inf 0 = NaN for g = 0) -- the step lost up to all
// of its digits though the scale was in range and the step itself is at most rho |w|. Zero, NaN and
// Inf w or g keep the reference's rounding (and its NaN / Inf).
template <class T> OK_HD bool sam_adaptive_direct(T p, T g) {
  const T lo = normal_lo<T>(), hi = normal_hi<T>();
  if (p == T(0) || !finite_(double(p)) || !finite_(double(g))) return true;
  const T pp = p * p, x = pp * g, ax = x < T(0) ? -x : x;
  return pp >= lo && pp <= hi && (g == T(0) || (ax >= lo && ax <= hi));
}
// The CPU's vector loop tests a chunk at once, from four extremes its entries' magnitudes reach
// (SamAdaptiveExtremes: max |w|, max |w^2 g|, the least nonzero |w| and |g|); the chunk's flagged
// entries, where !sam_adaptive_direct, are stepped again by the exact rule, and a chunk is flagged
// where some entry may be (a superset; a per-entry test in the loop cost float32 ASAM's step +19 %).
// Rounding is monotone, so for an entry with w != 0 (w, g finite), w^2 >= round(min|w|^2) and
// |w^2 g| >= round(round(min|w|^2) min|g|) where g != 0: those in the normal range, max|w|^2 and
// max|w^2 g| not past it, every entry is direct. A w^2 past the range (float64 w 1e200, float32
// 1e20) is found by max|w|, also beside g = 0 (w^2 g: inf 0 = NaN; the CPU's test once skipped
// g = 0 and stepped such a w to NaN). NaN entries are left out of the extremes (a NaN w or g is
// direct); Inf ones may flag their chunk, which the exact pass then steps as the reference does.
template <class T> struct SamAdaptiveExtremes {
  T w_max, x_max, w_min, g_min;
};
// One entry into the extremes (each v > m ? v : m, so a NaN never enters: the reductions' order,
// the lanes', cannot drop an extreme behind a NaN).
template <class T> OK_HD T sam_extreme_max(T m, T v) { return v > m ? v : m; }
template <class T> OK_HD T sam_extreme_min_nonzero(T m, T v) {
  const T inf = T(INFINITY);
  const T a = v == T(0) ? inf : v;
  return a < m ? a : m;
}
// (A least magnitude with no nonzero entry is Inf, or T's largest where an OpenMP min reduction
// started a lane there: both pass the lower bounds, and a real such |w| fails w_max's.)
template <class T> OK_HD bool sam_adaptive_clean(SamAdaptiveExtremes<T> e) {
  const T lo = normal_lo<T>(), hi = normal_hi<T>(), pp = e.w_min * e.w_min;
  return pp >= lo && e.w_max * e.w_max <= hi && e.x_max <= hi && pp * e.g_min >= lo;
}

// There: the step (w^2 g) scale with w, g and the scale each scaled into [1, 2) (exact powers of two)
// and the exponents added apart: the same three roundings as the reference's in an unbounded
// exponent range, then one exact scaling (a rounding more only where the step is subnormal, below
// half an ulp of a normal w). A zero g steps by 0 (w stays).
OK_HD double sam_adaptive_step_scaled(double p, double g, double scale) {
  if (g == 0.0) return 0.0;
  const int ep = scale_exp(p), eg = scale_exp(g), es = scale_exp(scale);
  const double pm = scale2(p, -ep), gm = scale2(g, -eg), sm = scale2(scale, -es);
  return scale2(mul_rn(mul_rn(mul_rn(pm, pm), gm), sm), 2 * ep + eg + es);
}

// sam_perturb_adaptive with that test: the GPU's step, and the CPU's for the entries its vector
// loop flagged. float32 takes the step (w^2 g) scale in double there (every factor's range fits
// double's: three roundings 2^-53, then the add rounded once to float32).
template <class T> OK_HD void sam_perturb_adaptive_checked(T& p, T g, T& backup, T scale) {
  if (sam_adaptive_direct(p, g)) {
    sam_perturb_adaptive(p, g, backup, scale);
    return;
  }
  backup = p;
  const double dp = double(p);
  if (sizeof(T) == 4) {
    p = T(scaled_plus(mul_rn(mul_rn(dp, dp), double(g)), double(scale), dp));  // (no fma: rounding.hpp)
    return;
  }
  p = scaled_plus(T(1), T(sam_adaptive_step_scaled(dp, double(g), double(scale))), p);
}

// One element's term of the ascent norm's sum of squares (float64): g, or |w| g for ASAM.
OK_HD double sam_norm_term(double p, double g, bool adaptive) { return adaptive ? p * g : g; }

// The norm's sum of squares out of range -- a float64 g (ASAM: w g) past ~1e154 overflowed it (norm
// inf, scale 0: the ascent silently skipped), below ~1e-162 it underflowed (norm 0, scale inf) -- is
// taken again as Lanczos' is (lanczos_sumsq_direct below says when; the same rule on CPU and GPU):
// the terms scaled by 2^-e, 2^e <= max |term| < 2^(e+1), exact, and ||g|| = norm_scaled(ssq, e).
// A gradient scaled by a power of two then moves w exactly as the unscaled one does.
// ASAM's term is w and g scaled apart, w 2^-ew in [1, 2) and g 2^(ew - e) (exact where it is normal:
// |w g 2^-e| < 2 bounds it), then their product, one rounding: w g rounded first fell below the
// normal range (w, g ~1e-160: 8 bits left, or 0) before the scaling could keep its digits. A product
// in the normal range scaled into it gives the same bits as before; 0, NaN and Inf w keep w g.
OK_HD double sam_norm_term_scaled(double p, double g, bool adaptive, int e) {
  if (!adaptive || p == 0.0 || !finite_(p)) return scale2(sam_norm_term(p, g, adaptive), -e);
  const int ep = scale_exp(p);
  return scale2(p, -ep) * scale2(g, ep - e);
}

// The rescan's max pass takes ASAM's terms 2^kSamUp larger (sam_norm_term_scaled, exact) where the
// direct sum underflowed (up): every |w g| < 2^-450 there, and 2^kSamUp brings the smallest product,
// 2^-2148, into the normal range, so max |term| has the exponent e + kSamUp of the largest product
// (the product rounded first gave 0 below 2^-1075: no rescan, no ascent). Plain SAM's terms are g.
constexpr int kSamUp = 1200;
OK_HD double sam_norm_term_max(double p, double g, bool adaptive, bool up) {
  return adaptive && up ? sam_norm_term_scaled(p, g, true, -kSamUp) : sam_norm_term(p, g, adaptive);
}
// The rescan's exponent e from that max (finite, > 0).
OK_HD int sam_rescan_exp(double amax, bool adaptive, bool up) {
  return scale_exp(amax) - (adaptive && up ? kSamUp : 0);
}
// up: the direct sum of squares fell below the range (finite), not past it.
OK_HD bool sam_rescan_up(double s) { return finite_(s) && s < sumsq_floor<double>(); }

// SAM's ascent scale; zero for rho = 0 (so w + scale g == w bit for bit), and zero for a norm that
// is NaN or inf (a gradient with NaN / Inf entries: no ascent direction, the ascent point is w, as
// for a zero gradient; an inf norm gave rho / inf = 0 already). rho / NaN made every moved param
// NaN: the second gradient, taken there, was NaN everywhere and the wrapped optimizer's step wrote
// NaN into every param and its state, where its own step with that gradient writes NaN only where
// the gradient has it. (grad_norm - grad_norm: NaN for inf and NaN, 0 otherwise.)
OK_HD double sam_scale(double rho, double grad_norm, double eps) {
  return rho == 0.0 || !(grad_norm - grad_norm == 0.0) ? 0.0 : rho / (grad_norm + eps);
}

// The ascent scale in the params' dtype T as m 2^k. A norm so small that rho / (||g|| + eps) is past
// T's range (float32 gradients below ~1e-38 with eps = 0, float64 ones below ~1e-308) made T(scale)
// inf and every moved param inf (NaN where g is 0), though each |rho g_i / ||g|||| <= rho. Then
// k > 0 carries the exponent: the move is w + m (g 2^k), g 2^k exact and its product with m the one
// rounding of g times the scale in an unbounded exponent range -- a gradient scaled by a power of
// two moves w exactly as the unscaled one does, as for the norm's rescan above. In range: k = 0 and
// m = T(scale), the bits as before. ||g|| + eps = 0 (a zero gradient, eps = 0): no ascent (m = 0).
// (float64: a norm that small is subnormal, of fewer bits: sam_scale_rescanned below takes the scale
// from the norm's scaled sum instead. A float32 gradient's norm, a double, is always a normal double.)
template <class T> struct SamScale {
  T m;
  int k;
};
template <class T> OK_HD SamScale<T> sam_scale_split(double rho, double grad_norm, double eps) {
  const double s = sam_scale(rho, grad_norm, eps), big = sizeof(T) == 4 ? 0x1.fffffep127 : 0x1.fffffffffffffp1023;
  const double d = grad_norm + eps;
  if (s <= big) return {T(s), 0};
  if (!(d > 0.0)) return {T(0), 0};
  const int er = scale_exp(rho), ed = scale_exp(d);  // both exact powers of two out: (rho / d) = m 2^(er - ed)
  return {T(scale2(rho, -er) / scale2(d, -ed)), er - ed};
}

// The ascent scale from a rescanned norm, ||g|| = sqrt(ssq) 2^e (sam_norm_term_scaled; ssq = 0: not
// rescanned). Rounded below double's normal range the norm keeps few bits (1e-321: 8), and
// rho / (||g|| + eps) from it moved w up to 1e-3 (relative) off the length rho: here the divisor is
// d = (sqrt(ssq) + eps 2^-e) 2^e, both scalings exact, and rho / d is split as sam_scale_split splits
// it (m in (1/2, 2), one rounding). An eps in the normal range swamps the norm's rounding (2^-1075 at
// most: 2^-53 of eps), and a norm in range is as exact as before: sam_scale_split, the same bits.
template <class T> OK_HD SamScale<T> sam_scale_rescanned(double rho, double norm, double eps, double ssq, int e) {
  constexpr double kMinNormal = 0x1p-1022;
  if (!(norm < kMinNormal) || !(eps < kMinNormal) || rho == 0.0 || !(ssq > 0.0) || !finite_(ssq))
    return sam_scale_split<T>(rho, norm, eps);
  const double es = scale2(eps, -e);  // (ASAM's e reaches -2148: eps 2^-e may overflow, the norm then
  if (!finite_(es)) return sam_scale_split<T>(rho, norm, eps);  // below 2^-1000 of eps: negligible)
  const double dm = norm_scaled(ssq, 0) + es;
  const int er = scale_exp(rho), ed = scale_exp(dm);
  const double m = scale2(rho, -er) / scale2(dm, -ed);
  const int k = er - ed - e;  // rho / d = m 2^k
  if (k <= (sizeof(T) == 4 ? 127 : 1023)) return {T(scale2(m, k)), 0};  // in T's range: m 2^k < 2^(k+1)
  return {T(m), k};
}

// The ascent step with a split scale (k > 0), rounded as sam_perturb / sam_perturb_adaptive are.
// ASAM: where w^2 is below T's normal range (|w| < 2^-511, float32 2^-63: few bits, or 0) or g 2^k past
// the range (a subnormal w), the step is m (w (w g 2^k)), w g 2^k scaled apart as
// sam_norm_term_scaled scales it (|w g 2^k| <~ 2 rho: in range), three roundings as the reference's.
template <class T> OK_HD void sam_perturb_split(T& p, T g, T& backup, SamScale<T> s, bool adaptive) {
  backup = p;
  const T gk = scale2(g, s.k);  // exact: 2^k > 1, and |g 2^k| < 2 rho |g| / (||g|| + eps) stays in range
  if (!adaptive) {
    p = scaled_plus(s.m, gk, p);
    return;
  }
  const T pp = p * p;
  if (p != T(0) && finite_(double(p)) && (!(pp >= normal_lo<T>()) || !finite_(double(gk)))) {
    const double t = sam_norm_term_scaled(double(p), double(g), true, -s.k);
    p = scaled_plus(s.m, p * T(t), p);
    return;
  }
  p = scaled_plus(s.m, pp * gk, p);
}

// Conjugate gradients on (A + lambda I) (hessian.cg), rounded like the NumPy/SciPy loop it
// replaces (each product, then each sum). Given y = A p, the damped product y + lambda p:
template <class T> OK_HD T cg_damped(T y, T p, T lambda) { return lambda == T(0) ? y : scaled_plus(lambda, p, y); }

// A term of the curvature p.(y + lambda p), summed in double. Scaled: hessian.cg's redo where the
// plain sum was not finite -- an indefinite A near float64's max (diag(+-1.7e308, ...)), whose partial
// sums of +-1.7e308 terms overflowed while p.Ap was in range, and "A: the product is not finite"
// blamed the operator. p is scaled by 2^-kCgRescale (exact down to 2^-958: such terms cannot count
// beside a sum that overflowed), the sum scaled back by cg_curvature_unscale; inf only where p.Ap
// itself is past the max (within the sum's rounding). Only on that path: the common sum pays nothing.
constexpr int kCgRescale = 64;
template <bool kScaled, class T> OK_HD double cg_curvature_term(T y, T p, T lambda) {
  const double q = kScaled ? scale2(double(p), -kCgRescale) : double(p);
  return q * double(cg_damped(y, p, lambda));
}
OK_HD double cg_curvature_unscale(double s) { return scale2(s, kCgRescale); }

// The iterate and residual move along p by the step alpha: x += alpha p, r -= alpha (A + lambda I) p.
template <class T> OK_HD void cg_update(T& x, T& r, T p, T ap, T alpha) {
  x = scaled_plus(alpha, p, x);
  r = scaled_plus(-alpha, ap, r);  // r - alpha ap: negating the product is exact
}

// The next search direction: p = z + beta p (z the preconditioned residual).
template <class T> OK_HD T cg_direction(T z, T p, T beta) { return scaled_plus(beta, p, z); }

// Lanczos' beta = ||w|| and w / beta (lanczos_orthogonalize_: cpp/linalg.cpp, cuda/linalg.cu; SAM's
// ascent norm takes the same test: sam_norm_term_scaled), with
// LAPACK nrm2's safeguard as the normalizations have it (rules/norm.hpp): the squares summed directly
// in double are kept when that sum is finite and above sumsq_floor. Else -- a float64 w with entries
// past ~1e154 (the sum overflowed: beta = inf, "products are not finite") or a norm below 2^-450
// (it underflowed: beta = 0, a breakdown at the first step; or lost digits) -- w is summed again
// scaled by 2^-e, 2^e <= max|w| < 2^(e+1) (exact), and Σw² = ssq 4^e (beta: norm_scaled). A float32
// w's squares never leave double's range, but w *= float(1 / beta) needs 1 / beta to be a float: a
// norm below 2^-125 (a near-breakdown of a 1e-30 operator) made it inf and w NaN.
template <class T> OK_HD bool lanczos_sumsq_direct(double ssq) {
  return finite_(ssq) && ssq >= (sizeof(T) == 4 ? 0x1p-250 : sumsq_floor<double>());
}

// An entry of w / beta from the scaled sum: (x 2^-e) / sqrt(ssq), never forming beta (which may be
// subnormal, its reciprocal inf) -- inv = 1 / sqrt(ssq).
template <class T> OK_HD T lanczos_unit_scaled(T x, int e, double inv) { return T(scale2(double(x), -e) * inv); }

}  // namespace rules
}  // namespace optkern
