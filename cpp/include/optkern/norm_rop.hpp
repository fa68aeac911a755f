// The R-operator of batch norm (training mode) and layer norm on an (N, D)
// array, element by element: the terms whose group means it needs and the
// per-element outputs, shared by the OpenMP loops (cpp/norm_rop.cpp) and the
// CUDA kernels (cuda/norm_rop.cu). Groups (the sets sharing one mean and
// rstd) are the columns (A = 0: batch norm) or the rows (A = 1: layer norm).
// Group means arrive stored by term: means[k * G + group].
#pragma once
#include <cstdint>

#include "optkern/common.hpp"
#include "optkern/rules/norm.hpp"

namespace optkern {
namespace rop {

// The saved forward statistics: x̂ of any element. A (the axis) is a
// template argument so the group index costs nothing in the inner loops.
// x̂ is the forward's: where h - mean may overflow (rules::normalize_needs_scaling: σ near the
// dtype's max) it is formed scaled, as the forward and backward kernels form it, else float32
// rows like [3e38, 3e38, -3e38] gave R{y} = inf and R{dh} = NaN where the exact values are finite.
// The CPU's `scaled` holds every group's (f, mf, rf) ([3][G], cpp/norm_rop.cpp's normalizers: the
// scaled ones where a group needs it, else (1, -mean, r), which rounds as (h - mean) r): one formula
// without a branch, so the loops vectorize (a `scaled ?` per element left them scalar, 7-13x
// batch_norm_backward's time). The GPU chooses per element (rules::normalize_safe).
// lo: every group's mean low part (rules::mean_lo; 0 where not needed), as the forward's: groups far
// from 0 (|mean| r > 1) normalized around the rounded mean alone had R{y}, R{dh} up to 0.5 off in
// float32 (rows of 1e7 + 0.5 + N(0, 1): layer_norm's y and dx exact to a few ulps, the R-operator's
// terms 3e6 ulps off; tests/test_hunt47a_rop_mean_lo.py). Computed from each such group's moments
// again (cpp/norm_rop.cpp: group_lows, cuda/norm_rop.cu: launch_lows), the others' 0.
template <class T, int A> struct Norm {
  const T *h, *mean, *rstd;
  int64_t N, D;
  const T* scaled = nullptr;
  const T* lo = nullptr;
  OK_HD int64_t group(int64_t n, int64_t d) const { return A == 1 ? n : d; }
  // The M elements of group g: j-th as row n_of(g, j), column d_of(g, j).
  OK_HD int64_t size() const { return A == 1 ? D : N; }
  OK_HD int64_t groups() const { return A == 1 ? N : D; }
  OK_HD int64_t n_of(int64_t g, int64_t j) const { return A == 1 ? g : j; }
  OK_HD int64_t d_of(int64_t g, int64_t j) const { return A == 1 ? j : g; }
  OK_HD T xhat(int64_t n, int64_t d) const {
    const int64_t g = group(n, d);
#if defined(__CUDACC__)
    return rules::normalize_safe(h[n * D + d], mean[g], lo[g], rstd[g]);
#else
    const int64_t G = A == 1 ? N : D;
    return rules::normalize(h[n * D + d], rules::ScaledNormalizer<T>{scaled[g], scaled[G + g], scaled[2 * G + g]}, lo[g]);
#endif
  }
};

// Forward terms: m(R{h}), m(x̂ R{h}).
template <class T, int A> struct FwdTerms {
  using value_type = T;
  static constexpr int K = 2, axis = A;
  Norm<T, A> s;
  const T* rh;
  OK_HD void operator()(int64_t n, int64_t d, T* v) const {
    const T x = rh[n * s.D + d];
    v[0] = x;
    v[1] = s.xhat(n, d) * x;
  }
};

// Backward terms: m(g), m(g x̂), m(R{g}), m(R{g} x̂ + g R{x̂}).
template <class T, int A> struct BwdTerms {
  using value_type = T;
  static constexpr int K = 4, axis = A;
  Norm<T, A> s;
  const T *dy, *rdy, *w, *vw, *rxhat;
  OK_HD void operator()(int64_t n, int64_t d, T* v) const {
    const int64_t i = n * s.D + d;
    const T xh = s.xhat(n, d), g = w[d] * dy[i], rg = w[d] * rdy[i] + vw[d] * dy[i];
    v[0] = g;
    v[1] = g * xh;
    v[2] = rg;
    v[3] = rg * xh + g * rxhat[i];
  }
};

// Parameter terms, summed over columns whatever the norm's axis:
// R{dγ} = Σ R{dy} x̂ + dy R{x̂},  R{dβ} = Σ R{dy}.
template <class T, int A> struct ParamTerms {
  using value_type = T;
  static constexpr int K = 2, axis = 0;
  Norm<T, A> s;
  const T *dy, *rdy, *rxhat;
  OK_HD void operator()(int64_t n, int64_t d, T* v) const {
    const int64_t i = n * s.D + d;
    v[0] = rdy[i] * s.xhat(n, d) + dy[i] * rxhat[i];
    v[1] = rdy[i];
  }
};

// R{x̂} and R{y} of element (n, d), from the FwdTerms means.
template <class T, int A> struct FwdElement {
  Norm<T, A> s;
  const T *rh, *w, *vw, *vb, *means;
  T *ry, *rxhat;
  // (rx, y) = (R{x̂}, R{y}) without storing them, outputs(k): where the k-th goes (the CPU's loops
  // form a chunk of a row in local buffers and copy it out: storing to the outputs inside the vector
  // loop and reading them back for the finite check ran 1.9x slower).
  OK_HD void values(int64_t n, int64_t d, T& rx, T& y) const {
    const int64_t G = A == 1 ? s.N : s.D, i = n * s.D + d, g = s.group(n, d);
    const T xh = s.xhat(n, d);
    rx = rules::norm_dx(rh[i], xh, s.rstd[g], means[g], means[G + g]);
    y = rules::norm_rop_y(xh, rx, w[d], vw[d], vb[d]);
  }
  OK_HD T* outputs(int k) const { return k == 0 ? rxhat : ry; }
  OK_HD void operator()(int64_t n, int64_t d) const {
    const int64_t i = n * s.D + d;
    values(n, d, rxhat[i], ry[i]);
  }
  // 0 when element i's outputs are finite, else NaN (summed over a row: any non-finite).
  OK_HD T nonfinite(int64_t i) const { return (ry[i] - ry[i]) + (rxhat[i] - rxhat[i]); }
};

// dh and R{dh} of element (n, d), from the BwdTerms means.
template <class T, int A> struct BwdElement {
  Norm<T, A> s;
  const T *dy, *rdy, *w, *vw, *rxhat, *m_xrh, *means;
  T *dh, *rdh;
  // (FwdElement::values)
  OK_HD void values(int64_t n, int64_t d, T& dhi, T& rdhi) const {
    const int64_t G = A == 1 ? s.N : s.D, i = n * s.D + d, g = s.group(n, d);
    const T xh = s.xhat(n, d), r = s.rstd[g];
    const T rg = w[d] * rdy[i] + vw[d] * dy[i];
    const T m_g = means[g], m_gx = means[G + g], m_rg = means[2 * G + g], m_rgx = means[3 * G + g];
    dhi = rules::norm_dx(dy[i], w[d], xh, r, m_g, m_gx);
    rdhi = rules::norm_rop_dx(rg, xh, rxhat[i], r, dhi, m_rg, m_gx, m_rgx, m_xrh[g]);
  }
  OK_HD T* outputs(int k) const { return k == 0 ? dh : rdh; }
  OK_HD void operator()(int64_t n, int64_t d) const {
    const int64_t i = n * s.D + d;
    values(n, d, dh[i], rdh[i]);
  }
  OK_HD T nonfinite(int64_t i) const { return (dh[i] - dh[i]) + (rdh[i] - rdh[i]); }
};

// ---- Directions near the dtype's max ------------------------------------------
// The group sums of the plain passes overflow where a direction (R{h}, dy, R{dy}, R{x̂}) holds values
// near the max (float32 rows like [3e38, 3e38, -3e38, 1.5e38]: Σ = inf, then R{y}, R{dh} inf / NaN),
// while the exact results are in range. The outputs are linear in the directions, so a group whose
// outputs came out non-finite is computed again with them scaled by powers of two (exact) and the
// results scaled back; a column sum of the parameter terms likewise. The loops find those groups
// (rare) and call these, one group per call, in a fixed order: other groups keep their bits, and a
// non-finite or small direction keeps the plain result (NaN in, NaN out; an r near the max is not a
// range problem of the directions).

using rules::down_exp;  // (amax 2^-k in [1, 2), rules/norm.hpp: dy near the max)

// R{x̂}, R{y} and m(x̂ R{h}) of group g again, with R{h} scaled by 2^-k (all three linear in R{h}).
template <class T, int A> OK_HD void fwd_group_scaled(const FwdElement<T, A>& e, T* m_xrh, int64_t g) {
  const Norm<T, A>& s = e.s;
  const int64_t M = s.size();
  T amax = T(0);
  for (int64_t j = 0; j < M; ++j) amax = rules::max_abs(amax, e.rh[s.n_of(g, j) * s.D + s.d_of(g, j)]);
  const int k = down_exp(amax);
  if (k == 0) return;
  double s0 = 0.0, s1 = 0.0;  // (in double, rounded to T once, as the plain pass's group sums)
  for (int64_t j = 0; j < M; ++j) {
    const int64_t n = s.n_of(g, j), d = s.d_of(g, j);
    const T x = rules::scale2(e.rh[n * s.D + d], -k);
    s0 += double(x);
    s1 += double(s.xhat(n, d) * x);
  }
  const double inv = 1.0 / double(M);
  const T m0 = T(s0 * inv), m1 = T(s1 * inv);
  m_xrh[g] = rules::scale2(m1, k);  // (|m(x̂ R{h})| <= max |R{h}|: in range)
  for (int64_t j = 0; j < M; ++j) {
    const int64_t n = s.n_of(g, j), d = s.d_of(g, j), i = n * s.D + d;
    const T xh = s.xhat(n, d);
    const T rxs = rules::norm_dx(rules::scale2(e.rh[i], -k), xh, s.rstd[g], m0, m1), rx = rules::scale2(rxs, k);
    e.rxhat[i] = rx;
    // (where R{x̂} itself is out of range, γ R{x̂} may not be: formed at the scale of R{x̂})
    e.ry[i] = rules::finite_(rx) ? rules::norm_rop_y(xh, rx, e.w[d], e.vw[d], e.vb[d])
                                 : rules::scale2(rules::norm_rop_y(xh, rxs, e.w[d], rules::scale2(e.vw[d], -k),
                                                                   rules::scale2(e.vb[d], -k)), k);
  }
}

// dh and R{dh} of group g again. dh is linear in dy; R{dh} in (dy, R{dy}) and in (R{x̂}, m(x̂ R{h}),
// vγ, R{dy}) (R{dy} is a product of both: in the MLP, of the loss gradient and the direction): dy
// scaled by 2^-a, the R-side by 2^-b and R{dy} by 2^-(a+b) scale dh by 2^-a and R{dh} by 2^-(a+b).
template <class T, int A> OK_HD void bwd_group_scaled(const BwdElement<T, A>& e, int64_t g) {
  const Norm<T, A>& s = e.s;
  const int64_t M = s.size();
  T ady = T(0), ardy = T(0), arx = rules::max_abs(T(0), e.m_xrh[g]);
  for (int64_t j = 0; j < M; ++j) {
    const int64_t d = s.d_of(g, j), i = s.n_of(g, j) * s.D + d;
    ady = rules::max_abs(ady, e.dy[i]);
    ardy = rules::max_abs(ardy, e.rdy[i]);
    arx = rules::max_abs(rules::max_abs(arx, e.rxhat[i]), e.vw[d]);
  }
  if (!rules::finite_(ady) || !rules::finite_(ardy) || !rules::finite_(arx)) return;
  const int a = down_exp(ady), c = down_exp(ardy) - a, b = c > down_exp(arx) ? c : down_exp(arx);
  if (a == 0 && b == 0) return;
  const auto terms = [&](int64_t j, T* v) {  // (BwdTerms of the scaled values; v[4]: x̂)
    const int64_t n = s.n_of(g, j), d = s.d_of(g, j), i = n * s.D + d;
    const T xh = s.xhat(n, d), dy = rules::scale2(e.dy[i], -a);
    const T gg = e.w[d] * dy, rg = e.w[d] * rules::scale2(e.rdy[i], -(a + b)) + rules::scale2(e.vw[d], -b) * dy;
    v[0] = gg, v[1] = gg * xh, v[2] = rg, v[3] = rg * xh + gg * rules::scale2(e.rxhat[i], -b), v[4] = xh;
  };
  double acc[4] = {0.0, 0.0, 0.0, 0.0};  // (fwd_group_scaled: in double, rounded once)
  T m[4], v[5];
  for (int64_t j = 0; j < M; ++j) {
    terms(j, v);
    for (int q = 0; q < 4; ++q) acc[q] += double(v[q]);
  }
  const double inv = 1.0 / double(M);
  const T mx = rules::scale2(e.m_xrh[g], -b), r = s.rstd[g];
  for (int q = 0; q < 4; ++q) m[q] = T(acc[q] * inv);
  for (int64_t j = 0; j < M; ++j) {
    const int64_t n = s.n_of(g, j), d = s.d_of(g, j), i = n * s.D + d;
    terms(j, v);
    const T dhi = rules::norm_dx(rules::scale2(e.dy[i], -a), e.w[d], v[4], r, m[0], m[1]);
    const T rx = rules::scale2(e.rxhat[i], -b);
    e.dh[i] = rules::scale2(dhi, a);
    e.rdh[i] = rules::scale2(rules::norm_rop_dx(v[2], v[4], rx, r, dhi, m[2], m[1], m[3], mx), a + b);
  }
}

// R{dγ}[d] = Σ R{dy} x̂ + dy R{x̂} and R{dβ}[d] = Σ R{dy} of column d again, the one that came out
// non-finite: dy scaled by 2^-e1, R{x̂} by 2^-(E - e1) and R{dy} by 2^-E, E = max(e1 + e2, e3).
template <class T, int A> OK_HD void param_col_scaled(const ParamTerms<T, A>& p, int64_t d, T* rdw, T* rdb) {
  const Norm<T, A>& s = p.s;
  T ady = T(0), arx = T(0), ardy = T(0);
  for (int64_t n = 0; n < s.N; ++n) {
    const int64_t i = n * s.D + d;
    ady = rules::max_abs(ady, p.dy[i]), arx = rules::max_abs(arx, p.rxhat[i]), ardy = rules::max_abs(ardy, p.rdy[i]);
  }
  if (!rules::finite_(ady) || !rules::finite_(arx) || !rules::finite_(ardy)) return;
  const int e1 = down_exp(ady), e2 = down_exp(arx), e3 = down_exp(ardy), E = e1 + e2 > e3 ? e1 + e2 : e3;
  double sw = 0.0, sb = 0.0;  // (fwd_group_scaled: in double, rounded once)
  for (int64_t n = 0; n < s.N; ++n) {
    const int64_t i = n * s.D + d;
    const T tw =
        rules::scale2(p.rdy[i], -E) * s.xhat(n, d) + rules::scale2(p.dy[i], -e1) * rules::scale2(p.rxhat[i], e1 - E);
    sw += double(tw);
    sb += double(rules::scale2(p.rdy[i], -e3));
  }
  if (!rules::finite_(rdw[d]) && E > 0) rdw[d] = rules::scale2(T(sw), E);
  if (!rules::finite_(rdb[d]) && e3 > 0) rdb[d] = rules::scale2(T(sb), e3);
}

}  // namespace rop
}  // namespace optkern
