// Moments of a sample, (count, mean, M2) triples (Chan et al.): their merge, the GPU's shifted sums
// and the CPU's corrected two-pass, for the normalizations' statistics (rules/norm.hpp).
#pragma once
#include <cstdint>

#include "optkern/common.hpp"

namespace optkern {
namespace rules {

// A sample summarized by its size, mean and sum of squared deviations.
template <class A> struct Moments {
  A n, mean, m2;
};

// Chan, Golub, LeVeque's merge of two disjoint samples (exact in exact
// arithmetic, stable in floating point; empty sides are fine).
template <class A> OK_HD Moments<A> merge(const Moments<A>& a, const Moments<A>& b) {
  const A n = a.n + b.n;
  if (n == A(0)) return a;
  const A d = b.mean - a.mean;
  const A fb = b.n / n;
  return {n, fma_t(d, fb, a.mean), fma_t(d * d * a.n, fb, a.m2 + b.m2)};
}

// M2 = Σ(x - mean)² of n values from q = Σ(x - m)² around any m, with dm = mean - m (never below 0;
// NaN stays NaN). The CPU's corrected two-pass (cpp/norm_cpu.hpp: m the mean rounded to x's dtype)
// and the GPU's shifted sums below (m a value of the chunk).
template <class A> OK_HD A corrected_m2(A q, A dm, A n) {
  const A m2 = fma_t(-(n * dm), dm, q);
  return m2 < A(0) ? A(0) : m2;
}

// Sums of a chunk around a shift K, the chunk's first value: its count, K, Σ(x - K) and Σ(x - K)²
// (the GPU's per-thread statistics, in double for every input dtype: cuda/norm_rows.cu,
// cuda/norm_channels.cuh). Then mean = K + Σ(x - K)/n and M2 = corrected_m2(Σ(x - K)², mean - K, n).
// K being one of the values, (K - mean)² <= M2: the correction cancels at most a factor n + 1 of
// the sum, never the data's offset from 0 (x = 1e4 + 0.01 N(0, 1): x - K is exact in double). A
// float32 Welford update (mean += d / n) rounded the mean to 1e4's ulp at every step: rstd was 361
// ulps off for 1e4 + N(0, 1) and 1% for 1e4 + 0.01 N(0, 1). Per value: a compare, a subtraction, an
// add and an fma, no division.
template <class A> struct ShiftedSums {
  int64_t n;
  A shift, s1, s2;
};
template <class A> OK_HD void push_shifted(ShiftedSums<A>& s, A x) {
  if (s.n == 0) s.shift = x;
  const A d = x - s.shift;
  s.n += 1;
  s.s1 += d;
  s.s2 = fma_t(d, d, s.s2);
}
template <class A> OK_HD Moments<A> shifted_moments(const ShiftedSums<A>& s) {
  if (s.n == 0) return {A(0), A(0), A(0)};
  const A n = A(s.n), dm = s.s1 / n;
  return {n, s.shift + dm, corrected_m2(s.s2, dm, n)};
}

// A mean rounded to x's dtype T and its refinement. The CPU's corrected two-pass takes m = T(Σx / n)
// and q = Σ(x - m)² (cpp/norm_cpu.hpp); a float T's Σx in double is exact to far below its ulp, a
// double T's is that sum's rounding (some ulps of x's magnitude), which moves M2 by n times its
// square: more than 2^-40 of M2 only below (2^20 k ε |m|)² per value for a mean up to k ε |m| off
// (ε = 2^-52: data a few ulps apart, constant rows far from 0; a constant float64 row of 1e20 had
// M2 = n ulp², y = ±1). There refine_mean (q of n values, k = n; never for a float T, false for a
// NaN q) asks for d = Σ(x - m) too (exact terms for data near m), and the moments are
// shifted_moments around m. Moments merged (Chan) from parts whose means were rounded so take the
// same per value bound (rules::remerge_needed in norm.hpp), k the ulps a merged mean may be off.
template <class T> OK_HD bool refine_mean(double q, double n, T m) {
  if constexpr (sizeof(T) == sizeof(double)) {
    const double b = 0x1p-32 * n * (m < T(0) ? -double(m) : double(m));  // 2^20 ε n |m|
    return q < n * b * b;
  } else {
    (void)q, (void)n, (void)m;
    return false;
  }
}
// The moments from the two-pass sums: n values, s = Σx in double, m = T(s / n), q = Σ(x - m)² and,
// for a double T, d = Σ(x - m) where refine_mean asked for it (else 0: the same bits, without the pass).
template <class T> OK_HD Moments<double> two_pass_moments(double n, double s, T m, double q, double d) {
  if constexpr (sizeof(T) == sizeof(double)) {
    (void)s;
    return shifted_moments(ShiftedSums<double>{int64_t(n), double(m), d, q});
  } else {
    (void)d;
    const double mean = s / n;
    return {n, mean, corrected_m2(q, mean - double(m), n)};
  }
}

}  // namespace rules
}  // namespace optkern
