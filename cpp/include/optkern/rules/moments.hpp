// Moments of a sample, (count, mean, M2) triples (Chan et al.): their merge, the GPU's shifted sums
// and the CPU's corrected two-pass, for the normalizations' statistics (rules/norm.hpp).
#pragma once
#include <cstdint>

#include "optkern/common.hpp"

namespace optkern {
namespace rules {

// A sample summarized by its size, mean and sum of squared deviations. The mean is carried as an
// unevaluated sum mean + lo (|lo| <= half an ulp of mean: mean is the rounded value every caller
// reads): a part's mean rounded to its dtype's ulp is off by a fraction of that ulp, and merge's
// n_a n_b / n Δmean² term, first order in Δmean's error, took it into M2 at every merge. Far from 0
// the parts' means differ by about σ / sqrt(part) while their roundings are of |mean|'s ulp: float64
// batch norm of 1e6 + N(0, 1) on (300000, 4) had rstd 2.4e4 ulps off (1e4 + N(0, 1): 500), merged
// from 74 blocks of 4096 rows. With lo the merged M2 is within a few ulps.
template <class A> struct Moments {
  A n, mean, m2, lo;
};

// a + b = s + e exactly (Knuth's TwoSum: no condition on the magnitudes; no product to contract).
template <class A> struct SumErr {
  A s, e;
};
template <class A> OK_HD SumErr<A> two_sum(A a, A b) {
  const A s = a + b, bb = s - a;
  return {s, (a - (s - bb)) + (b - bb)};
}
// The moments with mean + lo renormalized (mean the sum rounded). A non-finite mean or lo (inf - inf
// in the errors of an infinite mean) keeps the mean as it came, lo = 0: as without lo.
template <class A> OK_HD Moments<A> with_mean(A n, A hi, A lo, A m2) {
  if (!(hi - hi == A(0) && lo - lo == A(0))) return {n, hi, m2, A(0)};
  const SumErr<A> t = two_sum(hi, lo);
  return {n, t.s, m2, t.e};
}

// Chan, Golub, LeVeque's merge of two disjoint samples (exact in exact
// arithmetic, stable in floating point; empty sides are fine: the other one as it is). Δmean is
// taken from the means' both parts (the difference of the high parts is exact where they are
// close, the case that matters: elsewhere its rounding is of Δmean's size, not of the mean's); the
// merged mean a.mean + Δmean n_b / n is the rounded sum plus its TwoSum and product errors in lo (its
// high part mostly the one fma's bits, as before lo).
// kLo = false: parts without low parts (the CPU's float32 / half statistics, whose means in double lie
// far below x's ulp), the mean one fma as before lo: the CPU merges thousands of small blocks a call
// serially (float32 (4096, 512): 65536 merges, +0.3-0.5 ms on a 2 ms forward with the TwoSums).
template <bool kLo = true, class A> OK_HD Moments<A> merge(const Moments<A>& a, const Moments<A>& b) {
  if (b.n == A(0)) return a;
  if (a.n == A(0)) return b;
  const A n = a.n + b.n;
  const A d = (b.mean - a.mean) + (b.lo - a.lo);
  const A fb = b.n / n, m2 = fma_t(d * d * a.n, fb, a.m2 + b.m2);
  if constexpr (!kLo) {
    return {n, fma_t(d, fb, a.mean), m2, A(0)};
  } else {
    const A p = d * fb;
    const SumErr<A> t = two_sum(a.mean, p);
    return with_mean(n, t.s, t.e + fma_t(d, fb, -p) + a.lo, m2);
  }
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
template <class A> OK_HD void push_around(ShiftedSums<A>& s, A x) {  // (around the shift the sums hold)
  const A d = x - s.shift;
  s.n += 1;
  s.s1 += d;
  s.s2 = fma_t(d, d, s.s2);
}
template <class A> OK_HD void push_shifted(ShiftedSums<A>& s, A x) {
  if (s.n == 0) s.shift = x;
  push_around(s, x);
}
// Whether a chunk's sums around its first value K are to be taken again around their mean (reshifted,
// the values pushed again by push_around): K an outlier of the chunk, more than sqrt(15) of its σ from
// its mean, where M2 = Σ(x - K)² - n (mean - K)² keeps less than 1/16 of Σ(x - K)² (up to 1 / (n + 1)),
// whose rounding errors it multiplies. Float64 rows of 8192 (256 threads of 32) whose thread 0 began
// with a value 1e2 or 1e4 σ from the rest had rstd 5-24 ulps off (batch-norm channels 10-20), the
// CPU's two-pass < 2 (tests/test_cuda_hunt44c_shift_outlier.py). For normal data about one thread in 10^4 sums again.
// False for NaN / inf sums (their statistics go the scaled way).
template <class A> OK_HD bool reshift_needed(const ShiftedSums<A>& s) {
  return A(15) * A(s.n) * s.s2 < A(16) * s.s1 * s.s1;
}
template <class A> OK_HD ShiftedSums<A> reshifted(const ShiftedSums<A>& s) {
  return {0, s.shift + s.s1 / A(s.n), A(0), A(0)};
}
// (mean = K + Σ(x - K) / n as K + dm with dm's division remainder: lo holds what the rounding of
// K + dm and of dm drop.)
template <class A> OK_HD Moments<A> shifted_moments(const ShiftedSums<A>& s) {
  if (s.n == 0) return {A(0), A(0), A(0), A(0)};
  const A n = A(s.n), dm = s.s1 / n;
  const SumErr<A> t = two_sum(s.shift, dm);
  return with_mean(n, t.s, t.e + fma_t(-dm, n, s.s1) / n, corrected_m2(s.s2, dm, n));
}

// Whether q = Σ(x - m)² and d = Σ(x - m) of n values around a shift m leave M2 = q - d² / n with more
// than a quarter of q cancelled (m more than sqrt(M2 / 3n) per value from their mean): then M2 keeps
// fewer digits than q and the sums are taken again around the mean they give (the CPU's two-pass,
// cpp/norm_cpu.hpp: centred_moments). A double Σx in the first pass is rounded to ulps of x's
// magnitude, tens over a batch-norm block: for data a few ulps apart far from 0 (1e20 + {0..3} ulps)
// m sat tens of their spreads away. Never for d = 0 (a float T: its Σx in double is exact far below
// its ulp); false for NaN.
template <class A> OK_HD bool recentre_needed(A q, A d, A n) { return A(4) * d * d > n * q; }

// A mean rounded to x's dtype T and its refinement. The corrected two-pass takes m = T(Σx / n) and
// q = Σ(x - m)²; a float T's Σx in double is exact to far below its ulp, a double T's is that sum's
// rounding (some ulps of x's magnitude), which moves M2 by n times its square: more than 2^-40 of M2
// only below (2^20 k ε |m|)² per value for a mean up to k ε |m| off (ε = 2^-52: data a few ulps
// apart, constant rows far from 0; a constant float64 row of 1e20 had M2 = n ulp², y = ±1). There
// refine_mean (q of n values, k = n; never for a float T, false for a NaN q) asks for d = Σ(x - m)
// too (exact terms for data near m), and the moments are shifted_moments around m: the GPU's scaled
// fallback (cuda/norm_scaled.cuh; the CPU sums d in q's pass always, cpp/norm_cpu.hpp). Moments
// merged (Chan) from parts whose means were rounded take the same per value bound
// (rules::remerge_needed in norm.hpp), k the ulps a merged mean may be off.
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
// for a double T, d = Σ(x - m) (0 where not summed: then the mean is m). A float T's mean is s / n in
// double, far below its ulp: lo = 0 (its bits as before).
template <class T> OK_HD Moments<double> two_pass_moments(double n, double s, T m, double q, double d) {
  if constexpr (sizeof(T) == sizeof(double)) {
    (void)s;
    return shifted_moments(ShiftedSums<double>{int64_t(n), double(m), d, q});
  } else {
    (void)d;
    const double mean = s / n;
    return {n, mean, corrected_m2(q, mean - double(m), n), 0.0};
  }
}

}  // namespace rules
}  // namespace optkern
