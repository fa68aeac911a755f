// Normalization formulas: the single source of the math for the OpenMP loops
// (cpp/norm*.cpp) and the CUDA kernels (cuda/norm*.cu).
//
// Every normalization here is "x̂ = (x - μ) · r, y = γ x̂ + β" over some set of
// M elements (a row for layer / group / instance / RMS norm, a channel over
// batch and space for batch norm), with r = 1/sqrt(σ² + ε) (RMS norm: μ = 0,
// r = 1/sqrt(mean(x²) + ε)). Statistics are merged as (count, mean, M2)
// triples (Chan et al.), never as E[x²] - E[x]², so an input like
// 1e4 + N(0, 1) keeps its variance; each chunk's triple comes from a corrected two-pass (CPU) or
// shifted sums (GPU), accumulated in double.
//
// Backward, with g = γ ∘ dy (the gradient reaching x̂):
//   dx = r · (g - mean(g) - x̂ · mean(g ∘ x̂))      (RMS norm: without mean(g))
//   dγ = Σ dy ∘ x̂,  dβ = Σ dy                     (over the rows sharing γ)
// Eval-mode batch norm uses fixed statistics: dx = r · g.
//
// Every multiply-add is an explicit fma_t and every product rounded on its own is written so
// (rules/rounding.hpp): the bits do not depend on the compiler's contraction (-O1, -O3, each ISA
// clone, nvcc).
#pragma once
#include <cmath>
#include <cstdint>

#include "optkern/common.hpp"
#include "optkern/rules/moments.hpp"
#include "optkern/rules/rounding.hpp"

namespace optkern {
namespace rules {

#if defined(__CUDACC__)
template <class A> OK_HD A rsqrt_of(A v) { return A(1) / sqrt(v); }
#else
template <class A> OK_HD A rsqrt_of(A v) { return A(1) / std::sqrt(v); }
#endif

// ---- Overflow- and underflow-safe statistics (LAPACK nrm2's idea) -------------
// A kernel first sums squares (or squared deviations) directly. That sum is
// kept when stats_ok says so: finite and either far above the underflow
// range or dominated by eps. Otherwise (|x| near sqrt(max), tiny x with a
// tiny eps, zero rows, non-finite x) the row is summed again scaled by 2^-e,
// with 2^e <= max|x| < 2^(e+1) (exact: a power of two), and the results
// carry that exponent: Σx² = ssq · 4^e. A row holding NaN or ±inf gets NaN
// statistics (its output is NaN, never a finite-looking 0): the one
// treatment of non-finite input in every normalization.

// Below this a sum of squares in A may have lost digits to underflow:
// each element's error is at most half the smallest subnormal, so a sum of
// n < 2^31 terms above the floor is accurate to better than 2^-27 (float),
// 2^-140 (double).
template <class A> OK_HD A sumsq_floor() { return sizeof(A) == 4 ? A(0x1p-96) : A(0x1p-900); }
// An eps at least this large swamps what underflow loses (half the smallest
// subnormal per element, at most that on average) by > 2^45.
template <class A> OK_HD A eps_floor() { return sizeof(A) == 4 ? A(0x1p-100) : A(0x1p-1000); }

template <class A> OK_HD bool finite_(A v) { return v - v == A(0); }  // false for NaN and ±inf

// Whether moments merged from parts whose means were each rounded to a double T, up to k ulps off
// (the GPU's threads and splits: k the roundings a merged mean went through), need the deviations of
// all their values summed again around the merged mean, as refine_mean (moments.hpp) asks of a part:
// the merge's Δmean was then whole ulps off where the true ones differ by fractions of one, its
// n_a n_b / n Δmean² term, of M2's own size, that wrong (1e20 + {0..3} ulps: rstd 4-15 % off on the
// GPU). Never for a float T. (The means' low parts, Moments::lo, now keep such merges exact; the
// CPU, whose parts are centred on their means (recentre_needed), no longer asks.)
template <class T> OK_HD bool remerge_needed(const Moments<double>& acc, double k) {
  return finite_(T(acc.mean)) && refine_mean<T>(acc.m2 / acc.n * k, k, T(acc.mean));
}

// Whether a directly computed (mean, Σ squares) can be used as is (eps: 0 for a plain norm).
template <class A> OK_HD bool stats_ok(A mean, A sumsq, A eps) {
  return finite_(mean) && finite_(sumsq) && (sumsq >= sumsq_floor<A>() || eps >= eps_floor<A>());
}

// The exponent e of the scale 2^e for a row whose largest magnitude is amax
// (finite, > 0): x · 2^-e lies in (-2, 2).
#if defined(__CUDACC__)
template <class A> OK_HD int scale_exp(A amax) { return ilogb(amax); }
template <class A> OK_HD A scale2(A v, int e) { return ldexp(v, e); }
#else
template <class A> OK_HD int scale_exp(A amax) { return std::ilogb(amax); }
template <class A> OK_HD A scale2(A v, int e) { return std::ldexp(v, e); }
#endif

// max(|a|, |b|), NaN if either is NaN (so a row's NaN is seen by the fallback).
template <class A> OK_HD A max_abs(A a, A b) {
  const A bb = b < A(0) ? -b : b;
  return (bb > a || bb != bb) ? bb : a;
}

// Results of the scaled fallback: Σx² = ssq · 4^e; M2 = m2 · 4^e around `mean`
// (unscaled). The loops that produce them are the CPU's (cpp/norm_cpu.hpp) and
// the GPU's block-parallel ones (cuda/norm_scaled.cuh), on the same formulas.
template <class A> struct ScaledSq {
  A ssq;
  int e;
};
template <class A> struct ScaledMoments {
  A mean, m2;
  int e;
};

// Unbiased variance (running buffers) from scaled moments of n values.
template <class A> OK_HD A unbiased_var_scaled(const ScaledMoments<A>& q, int64_t n) {
  return n > 1 ? scale2(q.m2 / A(n - 1), 2 * q.e) : A(NAN);
}

// sqrt(ssq · 4^e): a Euclidean norm from a scaled sum of squares.
template <class A> OK_HD A norm_scaled(A ssq, int e) {
#if defined(__CUDACC__)
  return scale2(sqrt(ssq), e);
#else
  return scale2(std::sqrt(ssq), e);
#endif
}

// 1 / sqrt(v · 4^e + eps) without forming v · 4^e (which may overflow or
// underflow): = 2^-e / sqrt(v + eps · 4^-e). When eps · 4^-e overflows, the
// variance is below eps by far more than the precision: 1 / sqrt(eps). So it
// is when a zero variance meets an eps · 4^-e that underflowed to 0 (a
// subnormal eps, constant row): 1 / sqrt(0) would make x̂ = 0 · inf = NaN.
// When eps · 4^-e falls below the normal range it keeps few digits (a 1e-38
// float32 eps with e = 10 keeps 3 bits: rstd 0.4% off for a constant row), and
// the sum is formed unscaled instead: v · 4^e cannot underflow when e > 0.
template <class A> OK_HD A rsqrt_scaled(A v, int e, A eps) {
  const A eps_s = scale2(eps, -2 * e);
  if (!finite_(eps_s) || v + eps_s == A(0)) return rsqrt_of(eps);
  if (e > 0 && scale2(eps_s, 2 * e) != eps) {
    const A w = scale2(v, 2 * e);
    if (finite_(w)) return rsqrt_of(w + eps);
  }
  return scale2(rsqrt_of(v + eps_s), -e);
}

// 1 / sqrt(biased variance + eps).
template <class A> OK_HD A rstd(const Moments<A>& s, A eps) { return rsqrt_of(s.m2 / s.n + eps); }

// 1 / sqrt(mean(x²) + eps) for RMS norm.
template <class A> OK_HD A inv_rms(A sum_sq, A n, A eps) { return rsqrt_of(sum_sq / n + eps); }

// Unbiased variance for running statistics (PyTorch: m2 / (n - 1)).
template <class A> OK_HD A unbiased_var(const Moments<A>& s) { return s.n > A(1) ? s.m2 / (s.n - A(1)) : A(NAN); }

// A running statistic's update, PyTorch's (1 - momentum) running + momentum batch, in double and
// rounded once as its CPU kernel does (one fma: the same rounding on every ISA and on the GPU).
template <class A> OK_HD A running_stat(A running, A batch, double momentum) {
  return A(fma_t(momentum, double(batch), (1.0 - momentum) * double(running)));
}

template <class A> OK_HD A normalize(A x, A mean, A r) { return (x - mean) * r; }

// ---- x̂ where x - mean overflows ---------------------------------------------
// Each of the M values of a row (or channel) has |x - mean| <= sqrt(M) σ <= sqrt(M) / r (one square
// of Σ(x - mean)² = M σ²), below 2^31.5 / r for M < 2^63: in range while r >= 2^(32 - emax). Rows
// with a smaller r (σ above 2^96 ≈ 8e28 in float32, 2^992 in float64: values near the dtype's max,
// whose statistics took the scaled path) may overflow there, as float32 [3e38, 3e38, -3e38] did
// (x - mean = -4e38: y = -inf, dx = NaN, where x̂ = -1.41). They form x̂ scaled by 2^-e, with
// r 2^e in [1, 2): (x - mean) 2^-e as one fma of the exact x · 2^-e and -mean · 2^-e, times r 2^e.
// Scaling by a power of two is exact, so this rounds as (x - mean) · r wherever that is in range
// (mean · 2^-e below the normal range aside: then it is far below x̂'s precision). The kernels
// choose per row or channel (normcpu::with_normalizer; the GPU's per element, normalize_safe), so
// other rows keep the plain formula's instructions and bits. (The bound is for a row's own
// statistics: fixed running statistics far from x overflow as torch's eval mode does.)
template <class A> OK_HD bool normalize_needs_scaling(A r) {
  return r > A(0) && r < (sizeof(A) == 4 ? A(0x1p-96) : A(0x1p-992));  // (false for NaN)
}
// ---- The mean's low part -------------------------------------------------------
// A mean rounded to x's dtype A is up to half an ulp of |mean| off, and (x - mean) r carries that
// error times r into every x̂: float32 rows of 1e7 + N(0, 1) (ulp 1, σ 1) had y up to 0.49 off the
// float64 normalization of the same float32 values (torch's: 1.5). Where it can reach half an ulp of
// x̂ = 1 (|mean| r > 1: rows whose offset from 0 exceeds their σ) the rows subtract the mean's low
// part lo = A(mean_double - A(mean_double)) too: ((x - mean) - lo) r, x - mean exact by Sterbenz
// for x within a factor 2 of the mean, so x̂ rounds twice as (x - exact mean) r does. Elsewhere lo
// = 0, and (x - mean) - 0 gives the bits of x - mean: those rows keep theirs. The backward takes
// the same lo from the saved (mean, r) and the row's moments computed again (only those rows pay
// the extra pass). Not in the scaled normalizer (σ near the dtype's max, far above lo's size).
template <class A> OK_HD bool mean_lo_needed(A mean, A r) {
  return !normalize_needs_scaling(r) && (mean < A(0) ? -mean : mean) * r > A(1);  // (false for NaN)
}
// lo for the saved (mean, r) of a row whose moments in double are m (0 where not needed or not finite).
template <class A> OK_HD A mean_lo(const Moments<double>& m, A mean, A r) {
  if (!mean_lo_needed(mean, r)) return A(0);
  const A lo = A((m.mean - double(mean)) + m.lo);
  return finite_(lo) ? lo : A(0);
}
// The plain normalization of a row, ((x - mean) - lo) · r, as an object (the kernels take either).
template <class A> struct Normalizer {
  A mean, r, lo = A(0);
};
template <class A> OK_HD A normalize(A x, const Normalizer<A>& n) { return ((x - n.mean) - n.lo) * n.r; }
// The scaled one: x̂ = fma(x, f, mf) · rf with f = 2^-e, mf = -mean 2^-e, rf = r 2^e.
template <class A> struct ScaledNormalizer {
  A f, mf, rf;
};
template <class A> OK_HD ScaledNormalizer<A> scaled_normalizer(A mean, A r) {
  const int e = -scale_exp(r);  // r 2^e in [1, 2); e > 0 where normalize_needs_scaling(r)
  return {scale2(A(1), -e), -scale2(mean, -e), scale2(r, e)};
}
template <class A> OK_HD A normalize(A x, const ScaledNormalizer<A>& n) { return fma_t(x, n.f, n.mf) * n.rf; }
// The same form with a mean's low part, (fma(x, f, mf) - lo) · rf: for a plain group's (1, -mean, r)
// (fma(x, 1, -mean) rounds as x - mean) the bits of normalize(x, Normalizer{mean, r, lo}), for a scaled
// one lo = 0 (mean_lo) and v - 0 = v: the R-operator's one branchless formula for every group
// (optkern/norm_rop.hpp).
template <class A> OK_HD A normalize(A x, const ScaledNormalizer<A>& n, A lo) { return (fma_t(x, n.f, n.mf) - lo) * n.rf; }
// x̂ with the choice made for this element's statistics (the GPU's kernels, memory-bound, where a
// compare per element costs nothing).
template <class A> OK_HD A normalize_safe(A x, A mean, A r) {
  return normalize_needs_scaling(r) ? normalize(x, scaled_normalizer(mean, r)) : normalize(x, mean, r);
}
// The same with the mean's low part (0 where the scaled normalizer is chosen: mean_lo).
template <class A> OK_HD A normalize_safe(A x, A mean, A lo, A r) {
  return normalize_needs_scaling(r) ? normalize(x, scaled_normalizer(mean, r)) : normalize(x, Normalizer<A>{mean, r, lo});
}

template <class A> OK_HD A affine(A xhat, A w, A b) { return fma_t(xhat, w, b); }

// ---- Eval mode: fixed statistics folded into y = alpha x + beta -------------------
// torch's CPU eval batch norm (batch_norm_cpu_collect_linear_and_constant_terms, then its apply loop)
// folds (x - mean) r γ + β per channel into alpha = r γ and beta = β - mean alpha, both in the
// statistics' dtype, and y = x alpha + beta; its build contracts both multiply-adds into fmas
// (measured: float32 and float64, (N, C) and (N, C, H, W), every output bit-equal only so;
// tests/test_hunt55d_bn_eval_fold.py). The plain form (x - mean) r then γ x̂ + β was 1 ulp off torch
// in ~40% of float32 outputs where mean != 0 or γ != 1. (mean 0, γ 1, β 0 gives round(x r) either
// way.) Not for training: batch statistics keep the mean's low part (mean_lo) and x̂ on its own.
template <class A> struct EvalFold {
  A alpha, beta;
};
template <class A> OK_HD EvalFold<A> eval_fold(A mean, A r, A w, A b) {
  const A alpha = r * w;  // (rounded on its own, as torch stores it)
  return {alpha, fma_t(-mean, alpha, b)};
}
// Where the fold is used. beta's rounding, half an ulp of mean alpha, is an error of |mean| r / 2
// ulps of γ in y, which x alpha cancels back out of beta: within |mean| r <= 8 (a running mean up to
// 8 running σ from 0) y stays within about an ulp at |x̂| = 4 of the float64 normalization, as the
// plain form's; farther out torch's y loses more (float32 channels of 1e7 + N(0, 1): 0.38
// absolute, 8e5 ulps; tests/test_hunt47a_eval_far.py), so those channels keep the plain form, as do
// folds that overflowed (torch's y inf / NaN there) and NaN statistics.
template <class A> OK_HD bool eval_fold_used(A mean, A r, const EvalFold<A>& f) {
  return (mean < A(0) ? -mean : mean) * r <= A(8) && finite_(f.alpha) && finite_(f.beta);
}
template <class A> OK_HD A eval_apply(A x, A alpha, A beta) { return fma_t(x, alpha, beta); }

// dx of one element from the row (or channel) means of g and g ∘ x̂, given g (the R-operator's terms);
// its one multiply-add explicit (rules/rounding.hpp).
template <class A> OK_HD A norm_dx(A g, A xhat, A r, A mean_g, A mean_gxhat) {
  return r * fma_t(-xhat, mean_gxhat, g - mean_g);
}

// The same with g = dy γ formed here and rounded on its own before mean(g) comes off, as mean(g)'s
// sum of one value holds it: a statistic of one value gives g - mean(g) = 0 exactly. A contraction
// of dy γ - mean(g) into one fma left the product's rounding error times rstd instead (5e145 at the
// rstd 4e161 of eps = 5e-324: fuzz seed 9151).
template <class A> OK_HD A norm_dx(A dy, A w, A xhat, A r, A mean_g, A mean_gxhat) {
  return r * fma_t(-xhat, mean_gxhat, scaled_plus(dy, w, -mean_g));
}

// mean(g) and mean(g ∘ x̂) of a group of n elements (RMS norm: no mean(g) term) from its sums Σ g and
// Σ g x̂, which every dtype sums in double (the CPU's block_sums, the GPU's threads in double; batch
// norm's channels: GradSumKernel, cuda's GradSumOp), each rounded to A once here. Float32 sums lost
// accuracy on long rows: a row of 65536 with g = 1 + 0.01 N (every addend rounding alike) had dx 9e-6
// relative off, 3x the rounding of the dx formula itself, 2.7 x its size where dx nearly vanishes
// (dy = 0.1 + 1e-3 x: tests/test_hunt44c_normbwd_sums.py).
template <class A> struct GradMeans {
  A g, gx;
};
template <class A> OK_HD GradMeans<A> grad_means(double sum_g, double sum_gx, double n, bool rms) {
  return {rms ? A(0) : A(sum_g / n), A(sum_gx / n)};
}

// ---- dy near the dtype's max ----------------------------------------------------
// dx is a projection of g = γ dy, |dx| within a modest multiple of r max|γ dy|: in range wherever
// that is. The plain pass overflows first: its group sums Σ g and Σ g x̂ (float32 [1.8e38, 1.8e38,
// -1.8e38, ...]: Σ = inf, dx = -inf / NaN), or g itself, or g - mean(g). dx is linear in dy and in
// γ (dγ, dβ in dy), so a group whose dx came out non-finite is computed again with dy 2^-a and γ
// 2^-b (exact scalings: the group's largest |dy| and |γ| brought into [1, 2)) and scaled back by
// 2^(a+b); a dγ or dβ entry that came out non-finite is summed again with dy 2^-a, times 2^a (inf
// where the exact sum is past the max). The kernels find those groups from the outputs they write
// anyway (no pass over the others, which keep their bits). A non-finite dy or γ, or one whose
// largest magnitude is below 1 (an overflow that is r's), keeps the plain result (NaN in, NaN out).
// The loops are the CPU's (cpp/norm_cpu.hpp) and the GPU's block-parallel ones
// (cuda/norm_scaled.cuh); the R-operator does the same for its directions (optkern/norm_rop.hpp).

// The exponent k with amax 2^-k in [1, 2), for amax >= 1 and finite; else 0 (no scaling).
template <class A> OK_HD int down_exp(A amax) { return finite_(amax) && amax >= A(1) ? scale_exp(amax) : 0; }

// One element of a group as the redo loops read it.
template <class A> struct GradElem {
  A dy, w, xhat;
};

// The scaling of a group redone: dy 2^-a, γ 2^-b (none: a = b = 0).
struct GradScale {
  int a, b;
};
template <class A> OK_HD GradScale grad_scale(A max_dy, A max_w) {
  if (!finite_(max_dy) || !finite_(max_w)) return {0, 0};
  return {down_exp(max_dy), down_exp(max_w)};
}
OK_HD bool scales(const GradScale& s) { return s.a != 0 || s.b != 0; }
// g = γ dy of the scaled values (the terms of the scaled group sums: g, g x̂).
template <class A> OK_HD A scaled_g(A dy, A w, const GradScale& s) { return scale2(dy, -s.a) * scale2(w, -s.b); }
// dx from the group means of the scaled terms, scaled back.
template <class A> OK_HD A norm_dx_scaled(A dy, A w, A xhat, A r, A mean_g, A mean_gxhat, const GradScale& s) {
  return scale2(norm_dx(scale2(dy, -s.a), scale2(w, -s.b), xhat, r, mean_g, mean_gxhat), s.a + s.b);
}
// A parameter gradient's sum again: Σ scale2(dy, -a) t over its elements, times 2^a.
template <class A> OK_HD A param_unscaled(A sum_scaled, int a) { return scale2(sum_scaled, a); }

// R-operator (Pearlmutter) of a normalization whose statistics depend on the
// input, as in batch norm's training mode: with R{h} the direction of the
// input and m(.) the group mean,
//   R{x̂}  = norm_dx(R{h}, x̂, r, m(R{h}), m(x̂ R{h}))
//   R{y}  = γ R{x̂} + vγ x̂ + vβ
//   R{dh} = r (R{g} - m(R{g}) - R{x̂} m(g x̂) - x̂ m(R{g} x̂ + g R{x̂})) - r m(x̂ R{h}) dh
// where g = γ dy, R{g} = γ R{dy} + vγ dy and dh = norm_dx(g, x̂, r, m(g), m(g x̂)).
template <class A> OK_HD A norm_rop_y(A xhat, A rxhat, A w, A vw, A vb) { return fma_t(w, rxhat, fma_t(vw, xhat, vb)); }
template <class A>
OK_HD A norm_rop_dx(A rg, A xhat, A rxhat, A r, A dh, A m_rg, A m_gx, A m_rgx, A m_xrh) {
  return fma_t(-(r * m_xrh), dh, r * fma_t(-xhat, m_rgx, fma_t(-rxhat, m_gx, rg - m_rg)));
}

// Inverted dropout of one element, y = x · keep / (1 - p) with scale = 1 / (1 - p): the product is
// formed for a dropped element too (x · 0), as the formula and torch do, so a dropped NaN or ±inf
// gives NaN. A select of 0 for it (keep ? x · scale : 0) hid a NaN activation, and through backward
// (the same call on dy) a NaN gradient.
template <class A> OK_HD A dropout(A x, bool keep, A scale) { return x * (keep ? scale : A(0)); }

}  // namespace rules
}  // namespace optkern
