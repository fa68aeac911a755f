// Sums over [0, n) in interleaved lanes, for the CPU reductions. One
// accumulator (what `omp simd reduction` gives) makes every vector add wait
// for the previous one: the loop then runs at the add latency, not at the
// load rate. Here lane j of a block of W takes elements j, j + W, ...: four
// vectors of independent partial sums per term, folded in a fixed tree at
// the end, so the association depends on n only (never on alignment, ISA or
// thread count).
#pragma once
#include <cstdint>

#include "optkern/common.hpp"

#if defined(__GNUC__)
#define OK_LANE_INLINE inline __attribute__((always_inline))
#else
#define OK_LANE_INLINE inline
#endif

namespace optkern {

// out[k] = Σ_i v_k(i) for k < K, where f(i, v) writes the K terms of element i
// into v; A is the accumulation type.
template <int K, class A, class F> OK_LANE_INLINE void lane_sums(int64_t n, F&& f, A* out) {
  constexpr int64_t W = 128 / int64_t(sizeof(A));  // 4 AVX2 / 2 AVX-512 vectors per term
  A acc[K][W];
  for (int k = 0; k < K; ++k)
    for (int64_t j = 0; j < W; ++j) acc[k][j] = A(0);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) {
      A v[K];
      f(i + j, v);
      for (int k = 0; k < K; ++k) acc[k][j] += v[k];
    }
  }
  for (int k = 0; k < K; ++k) {
    for (int64_t w = W / 2; w > 0; w /= 2)
      for (int64_t j = 0; j < w; ++j) acc[k][j] += acc[k][j + w];
    out[k] = acc[k][0];
  }
  for (; i < n; ++i) {  // the tail, in order
    A v[K];
    f(i, v);
    for (int k = 0; k < K; ++k) out[k] += v[k];
  }
}

// Σ_i f(i) for one term.
template <class A, class F> OK_LANE_INLINE A lane_sum(int64_t n, F&& f) {
  A s;
  lane_sums<1, A>(n, [&](int64_t i, A* v) { v[0] = f(i); }, &s);
  return s;
}

}  // namespace optkern
