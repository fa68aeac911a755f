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
#include "optkern/rules/rounding.hpp"

#if defined(__GNUC__)
#define OK_LANE_INLINE inline __attribute__((always_inline))
#define OK_LANE_INLINE_LAMBDA __attribute__((always_inline))
#else
#define OK_LANE_INLINE inline
#define OK_LANE_INLINE_LAMBDA
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

// (Σ_i f(i).first, Σ_i f(i).second) in lane_sum's order and tree, in one pass: each sum has the bits
// lane_sum gives it alone. Two named lane arrays (one 2-D array does not vectorize: lane_sums).
template <class A, class F> OK_LANE_INLINE std::pair<A, A> lane_sum_pair(int64_t n, F&& f) {
  constexpr int64_t W = 128 / int64_t(sizeof(A));
  A a0[W], a1[W];
  for (int64_t j = 0; j < W; ++j) a0[j] = A(0), a1[j] = A(0);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) {
      const std::pair<A, A> v = f(i + j);
      a0[j] += v.first;
      a1[j] += v.second;
    }
  }
  for (int64_t w = W / 2; w > 0; w /= 2)
    for (int64_t j = 0; j < w; ++j) a0[j] += a0[j + w], a1[j] += a1[j + w];
  A s0 = a0[0], s1 = a1[0];
  for (; i < n; ++i) {  // the tail, in order
    const std::pair<A, A> v = f(i);
    s0 += v.first;
    s1 += v.second;
  }
  return {s0, s1};
}

// Σ_i a(i) b(i) in lane_sum's order, each product rounded on its own (rules::scaled_plus): GCC
// contracts a product into the add only in the ISA clones with FMA (-O2 and up), so a plain
// lane_sum of products gave other bits in the default clone and the -O1 sanitizer build, for
// float64 terms (a product of two floats is exact in double either way).
template <class A, class Fa, class Fb> OK_LANE_INLINE A lane_dot(int64_t n, Fa&& a, Fb&& b) {
  constexpr int64_t W = 128 / int64_t(sizeof(A));
  A acc[W];
  for (int64_t j = 0; j < W; ++j) acc[j] = A(0);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) acc[j] = rules::scaled_plus(a(i + j), b(i + j), acc[j]);
  }
  for (int64_t w = W / 2; w > 0; w /= 2)
    for (int64_t j = 0; j < w; ++j) acc[j] += acc[j + w];
  A s = acc[0];
  for (; i < n; ++i) s = rules::scaled_plus(a(i), b(i), s);  // the tail, in order
  return s;
}

// Σ_i f(i) over [0, n) in double, where f gives T: a double T is lane_sum<double>; a float T is
// summed in float lanes (full vector width) over blocks of kBlockTerms terms a lane, each block's
// lanes then added to double lanes (what a float's vector width buys over lane_sum<double>: one
// add per 8 terms, not a conversion and an add per 4). A float lane sum of thousands of terms was off
// by ~ε times its partial sums, and for terms of few distinct values every addition rounded alike;
// here the float rounding is that of a block's eight terms, the blocks summed in double. For sums
// of like-signed terms (squares: cpp/norm_cpu.hpp), within an ulp or so of the double sum of the
// terms. The association depends on n only.
constexpr int64_t kBlockTerms = 8;
template <class T, class F> OK_LANE_INLINE double block_sum(int64_t n, F&& f) {
  if constexpr (sizeof(T) == sizeof(double)) {
    return lane_sum<double>(n, f);
  } else {
    constexpr int64_t W = 128 / int64_t(sizeof(T)), B = W * kBlockTerms;
    double acc[W];
    for (int64_t j = 0; j < W; ++j) acc[j] = 0.0;
    int64_t i = 0;
    for (; i + B <= n; i += B) {
      T s[W];
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) s[j] = f(i + j);
      for (int64_t t = 1; t < kBlockTerms; ++t) {
#pragma omp simd
        for (int64_t j = 0; j < W; ++j) s[j] += f(i + t * W + j);
      }
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) acc[j] += double(s[j]);
    }
    for (int64_t w = W / 2; w > 0; w /= 2)
      for (int64_t j = 0; j < w; ++j) acc[j] += acc[j + w];
    double r = acc[0];
    for (; i < n; ++i) r += double(f(i));  // the tail, in order
    return r;
  }
}

// (Σ_i f(i).first, Σ_i f(i).second) in double, f giving std::pair<T, T>: block_sum's blocks, lanes and
// tree for each, in one pass (two named lane arrays a sum, as lane_sum_pair). block_sum per term,
// one pass each, rounded alike but took the S > 1 batch-norm backward 7-24 % over float32 lanes (each
// pass's float block stored and reloaded, and dy read twice); one pass here is no slower than those.
template <class T, class F> OK_LANE_INLINE std::pair<double, double> block_sum_pair(int64_t n, F&& f) {
  if constexpr (sizeof(T) == sizeof(double)) {
    return lane_sum_pair<double>(n, f);
  } else {
    constexpr int64_t W = 128 / int64_t(sizeof(T)), B = W * kBlockTerms;
    double a0[W], a1[W];
    for (int64_t j = 0; j < W; ++j) a0[j] = 0.0, a1[j] = 0.0;
    int64_t i = 0;
    for (; i + B <= n; i += B) {
      T s0[W], s1[W];
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) {
        const std::pair<T, T> v = f(i + j);
        s0[j] = v.first, s1[j] = v.second;
      }
#pragma GCC unroll 8
      for (int64_t t = 1; t < kBlockTerms; ++t) {
#pragma omp simd
        for (int64_t j = 0; j < W; ++j) {
          const std::pair<T, T> v = f(i + t * W + j);
          s0[j] += v.first, s1[j] += v.second;
        }
      }
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) a0[j] += double(s0[j]), a1[j] += double(s1[j]);
    }
    for (int64_t w = W / 2; w > 0; w /= 2)
      for (int64_t j = 0; j < w; ++j) a0[j] += a0[j + w], a1[j] += a1[j + w];
    double r0 = a0[0], r1 = a1[0];
    for (; i < n; ++i) {  // the tail, in order
      const std::pair<T, T> v = f(i);
      r0 += double(v.first), r1 += double(v.second);
    }
    return {r0, r1};
  }
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

template <int K, class T, class F, std::size_t... Ks>
OK_LANE_INLINE void block_sums_each(int64_t n, F& f, double* out, std::index_sequence<Ks...>) {
  ((out[Ks] = block_sum<T>(n, [&](int64_t i) {
      T v[K];
      f(i, v);
      return v[Ks];
    })),
   ...);
}

// out[k] = Σ_i v_k(i) in double (block_sum) for k < K, f(i, v) writing element i's K terms of type
// T into v, for sums the caller rounds to T once: two terms in one pass (block_sum_pair), more in
// lane_sums' passes, one per term.
template <int K, class T, class F> OK_LANE_INLINE void block_sums(int64_t n, F&& f, double* out) {
  if constexpr (K == 2) {
    const auto s = block_sum_pair<T>(n, [&](int64_t i) OK_LANE_INLINE_LAMBDA {
      T v[2];
      f(i, v);
      return std::pair<T, T>{v[0], v[1]};
    });
    out[0] = s.first, out[1] = s.second;
  } else {
    block_sums_each<K, T>(n, f, out, std::make_index_sequence<K>{});
  }
}

// out[k] = Σ_i v_k(i) for k < K, where f(i, v) writes the K terms of element i
// into v. One pass per term: GCC does not vectorize a 2-D K x W accumulator
// array in one simd loop, and the K passes over a row read it from L1. (K
// separately named lane arrays do vectorize: cpp/lbfgs.cpp's row_dots, where
// the row streams from memory and one pass instead of five was worth 20%.)
template <int K, class A, class F> OK_LANE_INLINE void lane_sums(int64_t n, F&& f, A* out) {
  lane_sums_each<K, A>(n, f, out, std::make_index_sequence<K>{});
}

}  // namespace optkern
