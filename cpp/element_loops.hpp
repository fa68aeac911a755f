// The element loops of the CPU multi-tensor apply (multi_tensor.hpp): one chunk of one array, no
// Python, no threads -- so that tests/test_rules_vectorize.py can compile them alone and check that
// every optimizer rule's loop vectorizes.
#pragma once
#include <cmath>
#include <cstdint>

#include "optkern/common.hpp"

namespace optkern {

constexpr int kMaxState = 3;

// Iterations independent: vectorize without a runtime alias check. Not `omp
// simd` for the rule loop: GCC 12 turns the per-iteration state array into an
// "omp simd array" and then gives up vectorizing every stateful rule.
#if defined(__clang__)
#define OK_INDEPENDENT _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define OK_INDEPENDENT _Pragma("GCC ivdep")
#else
#define OK_INDEPENDENT
#endif

// ---- element loops (one chunk of one tensor) --------------------------------

// Element i of p, g and the rule's K state arrays: load, apply, store (rule_loop's body, and the
// fused 8-bit step's, lowp_q8_fused.hpp: one element function, the same compiled operations).
template <class T, class Rule>
OK_HD void rule_at(const Rule& rule, T* OK_RESTRICT p, const T* OK_RESTRICT g, T* OK_RESTRICT s0,
                   T* OK_RESTRICT s1, T* OK_RESTRICT s2, int64_t i) {
  constexpr int K = Rule::kState;
  static_assert(K <= kMaxState, "rule has too many state arrays");
  T s[K > 0 ? K : 1];
  if constexpr (K > 0) s[0] = s0[i];
  if constexpr (K > 1) s[1] = s1[i];
  if constexpr (K > 2) s[2] = s2[i];
  T x = p[i];
  rule(x, g[i], s);
  p[i] = x;
  if constexpr (K > 0) s0[i] = s[0];
  if constexpr (K > 1) s1[i] = s[1];
  if constexpr (K > 2) s2[i] = s[2];
}

// p, g and the rule's K state values over a chunk.
template <class T, class Rule>
OK_CLONES void rule_loop(const Rule rule, T* OK_RESTRICT p, const T* OK_RESTRICT g, T* OK_RESTRICT s0,
                         T* OK_RESTRICT s1, T* OK_RESTRICT s2, int64_t n) {
  OK_INDEPENDENT
  for (int64_t i = 0; i < n; ++i) rule_at<T, Rule>(rule, p, g, s0, s1, s2, i);
}

// x <- f(x) (gradient transforms: clip by value, scale).
template <class T, class F>
OK_CLONES void map_loop(const F f, T* OK_RESTRICT x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = f(x[i]);
}

// x[i] = f(x[i], y[i]) (SWA's running average).
template <class T, class F>
OK_CLONES void zip_loop(const F f, T* OK_RESTRICT x, const T* OK_RESTRICT y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = f(x[i], y[i]);
}

// x <- f(x), and whether any x was inf or NaN before (GradScaler's unscale: one pass). `nonfinite`
// is rules::nonfinite (a parameter: this header has no rules).
template <class T, class F, class N>
OK_CLONES bool map_check_loop(const F f, const N nonfinite, T* OK_RESTRICT x, int64_t n) {
  int bad = 0;
#pragma omp simd reduction(| : bad)
  for (int64_t i = 0; i < n; ++i) {
    bad |= nonfinite(x[i]) ? 1 : 0;
    x[i] = f(x[i]);
  }
  return bad != 0;
}

// A term of sum_loop that is a square x^2: added as one fma, so that a sum of squares does not
// depend on whether the compiler contracts acc + x x (GCC does from -O2, not at -O1; for a float32
// x the product is exact either way, for a float64 one it is not).
struct Square {
  double x;
};
inline double add_term(double acc, double v) { return acc + v; }
inline double add_term(double acc, Square s) { return fma_t(s.x, s.x, acc); }

// sum_i f(a[i], b[i]) in float64 over kLanes fixed lanes, combined in a fixed
// tree: the association never depends on alignment, ISA or thread count.
constexpr int kLanes = 16;
template <class T, class F>
OK_CLONES double sum_loop(const F f, const T* a, const T* b, int64_t n) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) acc[l] = add_term(acc[l], f(a[i + l], b[i + l]));
  }
  double tail = 0.0;
  for (; i < n; ++i) tail = add_term(tail, f(a[i], b[i]));
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0] + tail;
}

// max_i |x[i]|, NaN if any element is NaN (like torch's inf-norm).
template <class T>
OK_CLONES double absmax_loop(const T* OK_RESTRICT x, int64_t n) {
  T m = T(0);
  int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
  for (int64_t i = 0; i < n; ++i) {
    const T a = std::fabs(x[i]);
    m = a > m ? a : m;
    nan |= (a != a);
  }
  return nan ? NAN : double(m);
}

}  // namespace optkern
