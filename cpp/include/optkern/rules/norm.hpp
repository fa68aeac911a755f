// Normalization formulas: the single source of the math for the OpenMP loops
// (cpp/norm*.cpp) and the CUDA kernels (cuda/norm*.cu).
//
// Every normalization here is "x̂ = (x - μ) · r, y = γ x̂ + β" over some set of
// M elements (a row for layer / group / instance / RMS norm, a channel over
// batch and space for batch norm), with r = 1/sqrt(σ² + ε) (RMS norm: μ = 0,
// r = 1/sqrt(mean(x²) + ε)). Statistics are merged as (count, mean, M2)
// triples (Welford / Chan et al.), never as E[x²] - E[x]², so an input like
// 1e4 + N(0, 1) keeps its variance in float32.
//
// Backward, with g = γ ∘ dy (the gradient reaching x̂):
//   dx = r · (g - mean(g) - x̂ · mean(g ∘ x̂))      (RMS norm: without mean(g))
//   dγ = Σ dy ∘ x̂,  dβ = Σ dy                     (over the rows sharing γ)
// Eval-mode batch norm uses fixed statistics: dx = r · g.
#pragma once
#include <cmath>

#include "optkern/common.hpp"

namespace optkern {
namespace rules {

#if defined(__CUDACC__)
template <class A> OK_HD A rsqrt_of(A v) { return A(1) / sqrt(v); }
#else
template <class A> OK_HD A rsqrt_of(A v) { return A(1) / std::sqrt(v); }
#endif

// A sample summarized by its size, mean and sum of squared deviations.
template <class A> struct Moments {
  A n, mean, m2;
};

// Welford's update with one more value.
template <class A> OK_HD void push(Moments<A>& s, A x) {
  s.n += A(1);
  const A d = x - s.mean;
  s.mean += d / s.n;
  s.m2 += d * (x - s.mean);
}

// Chan, Golub, LeVeque's merge of two disjoint samples (exact in exact
// arithmetic, stable in floating point; empty sides are fine).
template <class A> OK_HD Moments<A> merge(const Moments<A>& a, const Moments<A>& b) {
  const A n = a.n + b.n;
  if (n == A(0)) return a;
  const A d = b.mean - a.mean;
  const A fb = b.n / n;
  return {n, a.mean + d * fb, a.m2 + b.m2 + d * d * a.n * fb};
}

// The statistics of a chunk already summed around a shift K (shifted
// two-pass): mean = K + Σ(x-K)/n; m2 = Σ(x-mean)² from the second pass.
template <class A> OK_HD A shifted_mean(A shift, A sum_dev, A n) { return shift + sum_dev / n; }

// 1 / sqrt(biased variance + eps).
template <class A> OK_HD A rstd(const Moments<A>& s, A eps) { return rsqrt_of(s.m2 / s.n + eps); }

// 1 / sqrt(mean(x²) + eps) for RMS norm.
template <class A> OK_HD A inv_rms(A sum_sq, A n, A eps) { return rsqrt_of(sum_sq / n + eps); }

// Unbiased variance for running statistics (PyTorch: m2 / (n - 1)).
template <class A> OK_HD A unbiased_var(const Moments<A>& s) { return s.n > A(1) ? s.m2 / (s.n - A(1)) : A(NAN); }

template <class A> OK_HD A normalize(A x, A mean, A r) { return (x - mean) * r; }

template <class A> OK_HD A affine(A xhat, A w, A b) { return xhat * w + b; }

// dx of one element from the row (or channel) means of g and g ∘ x̂.
template <class A> OK_HD A norm_dx(A g, A xhat, A r, A mean_g, A mean_gxhat) {
  return r * (g - mean_g - xhat * mean_gxhat);
}

// R-operator (Pearlmutter) of a normalization whose statistics depend on the
// input, as in batch norm's training mode: with R{h} the direction of the
// input and m(.) the group mean,
//   R{x̂}  = norm_dx(R{h}, x̂, r, m(R{h}), m(x̂ R{h}))
//   R{y}  = γ R{x̂} + vγ x̂ + vβ
//   R{dh} = r (R{g} - m(R{g}) - R{x̂} m(g x̂) - x̂ m(R{g} x̂ + g R{x̂})) - r m(x̂ R{h}) dh
// where g = γ dy, R{g} = γ R{dy} + vγ dy and dh = norm_dx(g, x̂, r, m(g), m(g x̂)).
template <class A> OK_HD A norm_rop_y(A xhat, A rxhat, A w, A vw, A vb) { return w * rxhat + vw * xhat + vb; }
template <class A>
OK_HD A norm_rop_dx(A rg, A xhat, A rxhat, A r, A dh, A m_rg, A m_gx, A m_rgx, A m_xrh) {
  return r * (rg - m_rg - rxhat * m_gx - xhat * m_rgx) - r * m_xrh * dh;
}

// Weight norm, one output row: w = g · v / ‖v‖.  With s = Σ dw ∘ v:
//   dg = s / ‖v‖,  dv = (g / ‖v‖) · (dw - (s / ‖v‖²) · v).
template <class A> OK_HD A weight_norm_scale(A g, A norm) { return g / norm; }
template <class A> OK_HD A weight_norm_dv(A dw, A v, A scale, A s_over_norm2) { return scale * (dw - s_over_norm2 * v); }

}  // namespace rules
}  // namespace optkern
