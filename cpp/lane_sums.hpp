// Sums over [0, n) in interleaved lanes, for the CPU reductions. One
// accumulator (what `omp simd reduction` gives) makes every vector add wait
// for the previous one: the loop then runs at the add latency, not at the
// load rate. Here lane j of a block of W takes elements j, j + W, ...: four
// vectors of independent partial sums per term, folded in a fixed tree at
// the end, so the association depends on n only (never on alignment, ISA or
// thread count).
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>

#include "optkern/common.hpp"

#if defined(__GNUC__)
#define OK_LANE_INLINE inline __attribute__((always_inline))
#else
#define OK_LANE_INLINE inline
#endif

namespace optkern {

// Σ_i f(i) over [0, n); A is the accumulation type.
template <class A, class F> OK_LANE_INLINE A lane_sum(int64_t n, F&& f) {
  constexpr int64_t W = 128 / int64_t(sizeof(A));  // 4 AVX2 / 2 AVX-512 vectors
  A acc[W];
  for (int64_t j = 0; j < W; ++j) acc[j] = A(0);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) acc[j] += f(i + j);
  }
  for (int64_t w = W / 2; w > 0; w /= 2)
    for (int64_t j = 0; j < w; ++j) acc[j] += acc[j + w];
  A s = acc[0];
  for (; i < n; ++i) s += f(i);  // the tail, in order
  return s;
}

template <int K, class A, class F, std::size_t... Ks>
OK_LANE_INLINE void lane_sums_each(int64_t n, F& f, A* out, std::index_sequence<Ks...>) {
  ((out[Ks] = lane_sum<A>(n, [&](int64_t i) {
      A v[K];
      f(i, v);
      return v[Ks];  // the other terms are dead code in this pass
    })),
   ...);
}

// out[k] = Σ_i v_k(i) for k < K, where f(i, v) writes the K terms of element i
// into v. One pass per term: GCC does not vectorize K accumulator arrays in
// one simd loop, and the K passes over a row read it from L1.
template <int K, class A, class F> OK_LANE_INLINE void lane_sums(int64_t n, F&& f, A* out) {
  lane_sums_each<K, A>(n, f, out, std::make_index_sequence<K>{});
}

// out[q] = sum_i a[q][i] * b[q][i] for q < K, with lane_sum's lanes and fold (element i + j of
// a block of W in lane j; the same tree; the tail in order), so each out[q] is bitwise what
// lane_sum gives for that one product. One pass for all K: the products of an element share
// their loads (the push pass of L-BFGS takes 5 dots of each history row with 3 vectors; as K
// lane_sum passes it issued twice the loads). Explicit vectors: GCC does not vectorize K
// accumulator arrays in one simd loop.
// 32-byte GCC vectors of T (one AVX2 register; two SSE2 registers in the baseline clone).
template <class T> struct Vec32;
template <> struct Vec32<float> { typedef float type __attribute__((vector_size(32))); };
template <> struct Vec32<double> { typedef double type __attribute__((vector_size(32))); };

template <int K, class T>
OK_LANE_INLINE void lane_dots(int64_t n, const T* const (&a)[K], const T* const (&b)[K], T* out) {
  using V = typename Vec32<T>::type;
  constexpr int64_t L = int64_t(sizeof(V) / sizeof(T)), W = 128 / int64_t(sizeof(T)), U = W / L;
  V acc[K][U];
  for (int q = 0; q < K; ++q)
    for (int64_t u = 0; u < U; ++u) acc[q][u] = V{};
  int64_t i = 0;
  for (; i + W <= n; i += W)
    for (int64_t u = 0; u < U; ++u)
      for (int q = 0; q < K; ++q) {
        V x, y;
        __builtin_memcpy(&x, a[q] + i + u * L, sizeof(V));
        __builtin_memcpy(&y, b[q] + i + u * L, sizeof(V));
        acc[q][u] += x * y;
      }
  for (int q = 0; q < K; ++q) {
    T s[W];
    __builtin_memcpy(s, acc[q], sizeof(s));
    for (int64_t w = W / 2; w > 0; w /= 2)
      for (int64_t j = 0; j < w; ++j) s[j] += s[j + w];
    T r = s[0];
    for (int64_t j = i; j < n; ++j) r += a[q][j] * b[q][j];  // the tail, in order
    out[q] = r;
  }
}

}  // namespace optkern
