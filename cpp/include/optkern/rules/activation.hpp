// Elementwise activations with the first and second derivative in one pass:
// the single source of the math for cpp/nn.cpp (OpenMP) and cuda/nn.cu.
//
// The R-operator (Pearlmutter 1994) needs, per pre-activation z,
//   a = f(z),  f'(z)  (backward and R-forward),  f''(z)  (R-backward).
// GELU is the exact erf form (torch's default), softplus has beta = 1.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "optkern/common.hpp"
#include "optkern/rules/activation_kind.hpp"
#include "optkern/rules/gelu_poly.hpp"

namespace optkern {
namespace rules {
namespace nnmath {

// Device: CUDA's float/double overloads. Host: exp / expm1 / tanh (tanh_sech2_) are
// branch-free polynomial versions (below) so the OpenMP loops vectorize;
// they agree with libm to a few ulp. log1p on [0, 1] (softplus) is log1p01_, one form for both.
#if defined(__CUDACC__)
template <class T> OK_HD T exp_(T x) { return exp(x); }
template <class T> OK_HD T expm1_(T x) { return expm1(x); }
template <class T> OK_HD T log_(T x) { return log(x); }
// P e^x and m = e^x - 1 for x <= 0, P = 1, 2 or 4 (the host's below). Where e^x is subnormal (x below
// ln of the smallest normal) P e^x (P > 1) is e^(x + 2) (x + 2 exact: x and x + 2 share a binade there)
// times P e^-2, not the rounded e^x scaled up.
template <int P, class T> OK_HD T exp_em1_(T x, T& m) {
  m = expm1(x);
  const T e = exp(x);
  if constexpr (P == 1) {
    return e;
  } else {
    return e < T(sizeof(T) == 8 ? 2.2250738585072014e-308 : 1.17549435e-38)
               ? exp(x + T(2)) * T(P * 0.135335283236612691893999494972)
               : T(P) * e;
  }
}
#else
template <class T> struct FloatBits;
template <> struct FloatBits<double> {
  using I = int64_t;
  static constexpr int shift = 52, bias = 1023;
  // [lo, hi]: the clamp of the reduction. 4 e^lo = 2^-1080 rounds to 0 (so does all below, and e^x
  // below -1075 ln 2 = -745.13: no separate underflow test; 4: exp_em1_'s largest P).
  static constexpr double hi = 709.0, lo = -750.0;
  static constexpr double ln2_hi = 6.93147180369123816490e-01;      // Cody-Waite split of ln 2
  static constexpr double ln2_lo = 1.90821492927058770002e-10;
};
template <> struct FloatBits<float> {
  using I = int32_t;
  static constexpr int shift = 23, bias = 127;
  static constexpr float hi = 88.0f, lo = -110.0f;  // 4 e^lo = 2^-156.7 -> 0 (e^x is 0 below -103.97)
  static constexpr float ln2_hi = 0.693359375f;
  static constexpr float ln2_lo = -2.12194440e-4f;
};

// x = k ln2 + r, |r| <= ln2 / 2; returns q(r) = e^r - 1 (Taylor to r^13 in double, r^7 in float:
// truncation below half an ulp), s and c with 2^k = s c: s = 2^k, c = 1 where 2^k is normal, else
// s = 2^(1 - bias) (the smallest normal) and c = 2^(k - 1 + bias) (>= 2^-60, normal), so e^x =
// (s q + s) c is rounded once in the normal range and once more by c (correctly rounded but for a
// double-rounding tie) down to its underflow. (With 2^k kept normal, e^x was 0 below -708 / -87:
// sigmoid(-100) float32 0, not 3.8e-44 (torch's softplus and exp); tanh's f' 0 past |z| 44 / 354.)
template <class T> OK_HD T expm1_reduced(T x, T& s, T& c) {
  using B = FloatBits<T>;
  // NaN stays NaN (std::max(a, b) = a < b ? b : a). Not a ?: chain: with the explicit fmas below GCC
  // split its paths and ran the whole reduction twice per vector (tanh 30% slower).
  x = std::min(std::max(x, T(B::lo)), T(B::hi));
  const T k = std::floor(fma_t(x, T(1.44269504088896340736), T(0.5)));
  const T r = fma_t(-k, T(B::ln2_lo), fma_t(-k, T(B::ln2_hi), x));  // (k ln2_hi is exact)
  T q;
  if constexpr (sizeof(T) == 8) {
    q = T(1.0 / 6227020800.0);
    q = fma_t(q, r, T(1.0 / 479001600.0));
    q = fma_t(q, r, T(1.0 / 39916800.0));
    q = fma_t(q, r, T(1.0 / 3628800.0));
    q = fma_t(q, r, T(1.0 / 362880.0));
    q = fma_t(q, r, T(1.0 / 40320.0));
    q = fma_t(q, r, T(1.0 / 5040.0));
    q = fma_t(q, r, T(1.0 / 720.0));
    q = fma_t(q, r, T(1.0 / 120.0));
    q = fma_t(q, r, T(1.0 / 24.0));
    q = fma_t(q, r, T(1.0 / 6.0));
    q = fma_t(q, r, T(0.5));
  } else {
    q = T(1.0 / 5040.0);
    q = fma_t(q, r, T(1.0 / 720.0));
    q = fma_t(q, r, T(1.0 / 120.0));
    q = fma_t(q, r, T(1.0 / 24.0));
    q = fma_t(q, r, T(1.0 / 6.0));
    q = fma_t(q, r, T(0.5));
  }
  q = fma_t(q * r, r, r);
  // A NaN x leaves q NaN (so the result); its k must not reach the integer conversion (undefined).
  // Through int32 (|k| <= 1082): AVX2 has no double -> int64 conversion, and with one GCC left the
  // whole double loop of the x86-64-v3 clone scalar (the widening int32 -> int64 it has). 2^k =
  // 2^k1 2^(k - k1), k1 = max(k, 1 - bias), split in integers (one conversion, no select: a select of
  // s and c per lane made sigmoid's forward 1.7x slower, two conversions 1.3x).
  const int32_t ki = int32_t(k == k ? k : T(0));
  const int32_t k1 = std::max(ki, 1 - B::bias);
  const typename B::I b1 = (typename B::I(k1) + B::bias) << B::shift;
  const typename B::I b2 = (typename B::I(ki - k1) + B::bias) << B::shift;
  std::memcpy(&s, &b1, sizeof(T));
  std::memcpy(&c, &b2, sizeof(T));
  return q;
}
template <class T> OK_HD T exp_(T x) {
  T s, c;
  const T q = expm1_reduced(x, s, c);
  return fma_t(s, q, s) * c;
}
// s q + (s - 1): exact cancellation-free form, q itself when k = 0. (Where c != 1, s is the smallest normal
// and this is -1, e^x - 1 rounded.)
template <class T> OK_HD T expm1_(T x) {
  T s, c;
  const T q = expm1_reduced(x, s, c);
  return fma_t(s, q, s - T(1));
}
// P e^x and e^x - 1 (x <= 0) from one reduction, P = 1, 2 or 4 (exact): P e^x stays normal where e^x
// alone is subnormal (tanh's 4 e^(-2|z|), sech^2, normal to |z| = 354.9 / 44.4).
template <int P, class T> OK_HD T exp_em1_(T x, T& m) {
  static_assert(P == 1 || P == 2 || P == 4, "P e^lo must round to 0");
  T s, c;
  const T q = expm1_reduced(x, s, c);
  m = fma_t(s, q, s - T(1));
  const T ps = T(P) * s;
  return fma_t(ps, q, ps) * c;
}
template <class T> OK_HD T log_(T x) { return std::log(x); }
#endif

// tanh |x| = -m / (2 + m) with m = expm1(-2 |x|) (no cancellation near 0), and its derivative
// sech^2 x = 1 - tanh^2 x from the pre-activation: 4 e / (1 + e)^2 with e = e^(-2|x|) and
// 1 + e = 2 + m, one reduction for both. 1 - t^2 from the rounded t cancels as |x| grows (float32:
// 1.8e-5 relative at x = -3, 0 -- the true value ~1e-7 -- past |x| ~ 8.3); this is a few ulps
// wherever sech^2 is normal (4 e formed at once: e alone is subnormal past |x| 354.2 / 43.7, 4 e to
// 354.9 / 44.4). The sign is copied from x: -m / u of m = 0 was -0, tanh(+0) = -0 (torch: +0).
template <class T> OK_HD T tanh_sech2_(T x, T& sech2) {
  T m;
  const T e4 = exp_em1_<4>(T(-2) * (x < T(0) ? -x : x), m);
  const T u = T(2) + m;
  sech2 = e4 / (u * u);
  const T t = -m / u;
#if defined(__CUDACC__)
  return copysign(t, x);
#else
  return std::copysign(t, x);
#endif
}

// log1p(x) for x in [0, 1] (softplus's log1p(e^-|z|)), branch-free so the loop vectorizes (libm's
// log1p is a scalar call), on host and device alike. log1p x = 2 atanh(t / 2) with t = 2 x / (2 + x)
// in [0, 2/3]: t + t v P(v), v = t^2 / 4, P(v) = sum v^n / (2 n + 3), Taylor's own coefficients (no
// fit to regenerate). Truncated after v^15 (double) / v^6 (float): the remainder is below 2e-18 /
// 2e-9 of the value (v <= 1/9). t is carried as t0 + tl: s = 2 + x rounds off sl = x - (s - 2)
// (exact: s - 2 is, Sterbenz) and t0 = 2 x / s off r = 2 x - t0 s (fma), so t = t0 + (r - t0 sl) / s
// to first order; t0 is added last, and the result is within ~0.6 ulp (libm's: ~0.5). (t, not
// u = t / 2: u is subnormal for float x below 2.4e-38, and 2 u lost the bits.) NaN stays NaN; 0 -> 0.
template <class T> OK_HD T log1p01_(T x) {
  const T s = T(2) + x;
  const T sl = x - (s - T(2));
  const T inv = T(1) / s;
  const T t0 = T(2) * x * inv;
  const T tl = (fma_t(-t0, s, T(2) * x) - t0 * sl) * inv;
  const T v = T(0.25) * t0 * t0;
  T p;
  if constexpr (sizeof(T) == 8) {
    p = T(1.0 / 33);
    p = fma_t(p, v, T(1.0 / 31));
    p = fma_t(p, v, T(1.0 / 29));
    p = fma_t(p, v, T(1.0 / 27));
    p = fma_t(p, v, T(1.0 / 25));
    p = fma_t(p, v, T(1.0 / 23));
    p = fma_t(p, v, T(1.0 / 21));
    p = fma_t(p, v, T(1.0 / 19));
    p = fma_t(p, v, T(1.0 / 17));
    p = fma_t(p, v, T(1.0 / 15));
    p = fma_t(p, v, T(1.0 / 13));
    p = fma_t(p, v, T(1.0 / 11));
    p = fma_t(p, v, T(1.0 / 9));
    p = fma_t(p, v, T(1.0 / 7));
    p = fma_t(p, v, T(1.0 / 5));
    p = fma_t(p, v, T(1.0 / 3));
  } else {
    p = T(1.0 / 15);
    p = fma_t(p, v, T(1.0 / 13));
    p = fma_t(p, v, T(1.0 / 11));
    p = fma_t(p, v, T(1.0 / 9));
    p = fma_t(p, v, T(1.0 / 7));
    p = fma_t(p, v, T(1.0 / 5));
    p = fma_t(p, v, T(1.0 / 3));
  }
  return t0 + fma_t(t0 * v, p, tl);
}

// sigmoid s, its f' = s (1 - s) and f'' = s (1 - s) (1 - 2 s) (softplus's f', f'' and third), and
// e = e^-|z|, from one reduction, without overflow for large |z|: with r = 1 / (1 + e), s = r (z >= 0)
// or e r, s (1 - s) = e r^2 and 1 - 2 s = -+(1 - e) r, 1 - e = -expm1(-|z|). s (1 - s) from the
// rounded s cancelled to 0 as s -> 1 (z past ~17 float32 / ~37 float64, where e^-z is normal), and
// 1 - 2 s near z = 0 (float32: f'' at z = -3.8e-8 was 1.5e-8, 4.8e-9 true).
template <class T> OK_HD T logistic_(T z, T& e, T& d1, T& d2) {
  T m;
  e = exp_em1_<1>(z < T(0) ? z : -z, m);
  const T r = T(1) / (T(1) + e);
  d1 = e * r * r;
  d2 = d1 * ((z < T(0) ? -m : m) * r);
  return z < T(0) ? e * r : r;
}

// GELU f = z Phi(z), f' = Phi + z phi, f'' = phi (2 - z^2) in double (float's too: rounded once at
// the end), branch-free so the loops vectorize (over libm's erfc they did not: 8x slower). phi =
// C e^2 (1 - l / 2) with z^2 = h + l exact and e = e^(-h / 4) (the one exp) multiplied by e last, so
// products with phi stay accurate where phi itself is already subnormal. Phi from gelu_poly.hpp: near 0
// (|z| < kGeluNear) 1/2 + z P(z^2), else from the Mills ratio M(x) = (1 - Phi(x)) / phi(x), x = |z|:
// 1 - Phi(x) = phi M for z > 0 (at most 0.23: no cancellation), and for z < 0 f = -phi x M and
// f' = phi (M - x) as one product each, so the tail holds down to f's underflow. (0.5 (1 + erf) cancels
// for z < 0, and erfc of a rounded -z / sqrt 2 is off by 2 t^2 ulps.) Where e underflows the phi terms
// are 0 (not 0 * inf); NaN stays NaN, f(-inf) = -0, f'(+-inf) = 1, 0 (the limits; torch gives NaN).
OK_HD void gelu_terms(double z, double& f, double& d1, double& d2) {
  const double h = z * z, l = fma_t(z, z, -h);
  const double e = exp_(-0.25 * h);
  const double ce = 0.39894228040143267794 * e * fma_t(-0.5, l, 1.0);
  // (ce v) e, phi v, without 0 * inf where phi underflows
  const auto phi_times = [&](double v) { return e != 0.0 ? (ce * v) * e : 0.0; };
  const double x = z < 0.0 ? -z : z;
  const double r = 1.0 / (x + kGeluK);
  const double m = gelu_mills(fma_t(kGeluBeta, r, kGeluAlpha)) * r;  // M(x)
  const bool near = x < kGeluNear, tail = (z < 0.0) & !near;
  const double q = phi_times(tail ? x * m : m);  // -f in the tail, else 1 - Phi(x)
  const double cdf = near ? fma_t(z, gelu_near(h), 0.5) : 1.0 - q;
  f = tail ? -q : z * cdf;
  const double p = phi_times(tail ? m - x : z);
  d1 = tail ? p : cdf + p;
  d2 = phi_times(fma_t(-z, z, 2.0));
}

}  // namespace nnmath

// f(z), f'(z), f''(z) of activation `k`.
template <class T> OK_HD void activation(Act k, T z, T& f, T& d1, T& d2) {
  using namespace nnmath;
  switch (k) {
    case Act::tanh: {  // f' = 1 - f^2 (from z: tanh_sech2_), f'' = -2 f f'
      f = tanh_sech2_(z, d1);
      d2 = T(-2) * f * d1;
      return;
    }
    case Act::relu: {  // f'' = 0 away from the kink
      // z < 0, not !(z > 0): NaN stays NaN and -0 stays -0, as torch.relu (NaN -> 0 hid a NaN
      // input behind a finite loss). f' as torch's backward (threshold_backward: 0 where z <= 0):
      // a NaN z passes its gradient on (z > 0 cut it off)
      f = z < T(0) ? T(0) : z;
      d1 = z <= T(0) ? T(0) : T(1);
      d2 = T(0);
      return;
    }
    case Act::gelu: {  // f = z Phi(z), f' = Phi + z phi, f'' = phi (2 - z^2)
      double g0, g1, g2;
      gelu_terms(double(z), g0, g1, g2);
      f = T(g0);
      d1 = T(g1);
      d2 = T(g2);
      return;
    }
    case Act::sigmoid: {  // f' = s (1 - s), f'' = f' (1 - 2 s)
      T e;
      f = logistic_(z, e, d1, d2);
      return;
    }
    case Act::softplus: {  // log(1 + e^z) = max(z, 0) + log1p(e^-|z|); f' = sigmoid, f'' = its f'
      // one exp for all: sigmoid's own e^-|z| and form (no second reduction per element)
      T e, d3;
      d1 = logistic_(z, e, d2, d3);
      f = (z > T(0) ? z : T(0)) + log1p01_(e);
      return;
    }
    default: {  // identity
      f = z;
      d1 = T(1);
      d2 = T(0);
      return;
    }
  }
}

}  // namespace rules
}  // namespace optkern
