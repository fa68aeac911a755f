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
// The CPU chooses once per call: `scaled` holds every group's (f, mf, rf) ([3][G], normcpu::
// ChannelScaling; plain groups as (1, -mean, r), which rounds as (h - mean) r), null when no group
// needs it (the plain formula's loops). The GPU chooses per element (rules::normalize_safe).
template <class T, int A> struct Norm {
  const T *h, *mean, *rstd;
  int64_t N, D;
  const T* scaled = nullptr;
  OK_HD int64_t group(int64_t n, int64_t d) const { return A == 1 ? n : d; }
  OK_HD T xhat(int64_t n, int64_t d) const {
    const int64_t g = group(n, d);
#if defined(__CUDACC__)
    return rules::normalize_safe(h[n * D + d], mean[g], rstd[g]);
#else
    if (scaled) {
      const int64_t G = A == 1 ? N : D;
      return rules::normalize(h[n * D + d], rules::ScaledNormalizer<T>{scaled[g], scaled[G + g], scaled[2 * G + g]});
    }
    return rules::normalize(h[n * D + d], mean[g], rstd[g]);
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
  OK_HD void operator()(int64_t n, int64_t d) const {
    const int64_t G = A == 1 ? s.N : s.D, i = n * s.D + d, g = s.group(n, d);
    const T xh = s.xhat(n, d);
    const T rx = rules::norm_dx(rh[i], xh, s.rstd[g], means[g], means[G + g]);
    rxhat[i] = rx;
    ry[i] = rules::norm_rop_y(xh, rx, w[d], vw[d], vb[d]);
  }
};

// dh and R{dh} of element (n, d), from the BwdTerms means.
template <class T, int A> struct BwdElement {
  Norm<T, A> s;
  const T *dy, *rdy, *w, *vw, *rxhat, *m_xrh, *means;
  T *dh, *rdh;
  OK_HD void operator()(int64_t n, int64_t d) const {
    const int64_t G = A == 1 ? s.N : s.D, i = n * s.D + d, g = s.group(n, d);
    const T xh = s.xhat(n, d), r = s.rstd[g];
    const T rg = w[d] * rdy[i] + vw[d] * dy[i];
    const T m_g = means[g], m_gx = means[G + g], m_rg = means[2 * G + g], m_rgx = means[3 * G + g];
    const T dhi = rules::norm_dx(dy[i], w[d], xh, r, m_g, m_gx);
    dh[i] = dhi;
    rdh[i] = rules::norm_rop_dx(rg, xh, rxhat[i], r, dhi, m_rg, m_gx, m_rgx, m_xrh[g]);
  }
};

}  // namespace rop
}  // namespace optkern
