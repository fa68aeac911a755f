// CPU building blocks of the normalization loops: chunked shifted two-pass
// statistics and OpenMP drivers whose results never depend on the number of
// threads (work splits only decide who computes a row or block, not how).
#pragma once
#include <algorithm>
#include <cstdint>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "optkern/common.hpp"
#include "lane_sums.hpp"
#include "parallel.hpp"
#include "optkern/rules/norm.hpp"

#if defined(__GNUC__)
#define OK_INLINE inline __attribute__((always_inline))
#else
#define OK_INLINE inline
#endif

namespace optkern {
namespace normcpu {

// Statistics chunk: small enough that the second pass reads from L1.
constexpr int64_t kStatChunk = 2048;
// Row blocks holding parameter-gradient partials (fixed: from shapes only).
constexpr int64_t kGradBlocks = 64;

// Moments of x[0..n) by the shifted two-pass method: Σ(x - x0) then Σ(x - mean)².
template <class T> OK_INLINE rules::Moments<T> chunk_moments(const T* OK_RESTRICT x, int64_t n) {
  const T k = x[0];
  const T s = lane_sum<T>(n, [&](int64_t i) { return x[i] - k; });
  const T mean = rules::shifted_mean(k, s, T(n));
  const T q = lane_sum<T>(n, [&](int64_t i) { return (x[i] - mean) * (x[i] - mean); });
  return {T(n), mean, q};
}

// Moments of a contiguous run, chunk by chunk merged in order (Chan).
template <class T> OK_INLINE rules::Moments<T> moments(const T* x, int64_t n) {
  rules::Moments<T> acc{T(0), T(0), T(0)};
  for (int64_t c = 0; c < n; c += kStatChunk) acc = rules::merge(acc, chunk_moments(x + c, std::min(kStatChunk, n - c)));
  return acc;
}

template <class T> OK_INLINE T sum_squares(const T* OK_RESTRICT x, int64_t n) {
  return lane_sum<T>(n, [&](int64_t i) { return x[i] * x[i]; });
}

// Ask for the next row while this one is written: a row is often one 4 KiB
// page, where the hardware streamer stops, so its first lines would
// otherwise arrive only when the statistics pass stalls on them.
template <class T> OK_INLINE void prefetch_row(const T* x, int64_t n) {
#if defined(__GNUC__)
  constexpr int64_t line = 64 / int64_t(sizeof(T));
  for (int64_t j = 0; j < n; j += line) __builtin_prefetch(x + j, 0, 2);
#else
  (void)x, (void)n;
#endif
}

// Outputs at least this many bytes are written with non-temporal stores:
// they do not fit the last-level cache anyway, and a streamed line is written
// once instead of first being read (write-allocate), a third of the traffic
// of y = f(x). Default 16 MiB; tests lower it to cover the streamed path.
inline int64_t& stream_bytes() {
  static int64_t bytes = int64_t(16) << 20;
  return bytes;
}
inline bool stream_output(int64_t n, size_t itemsize) { return n * int64_t(itemsize) >= stream_bytes(); }

#if defined(__x86_64__)
OK_INLINE void stream4(float* p, const float* v) { _mm_stream_ps(p, _mm_load_ps(v)); }
OK_INLINE void stream4(double* p, const double* v) { _mm_stream_pd(p, _mm_load_pd(v)), _mm_stream_pd(p + 2, _mm_load_pd(v + 2)); }
// Orders this thread's streamed stores before what follows (end of a task).
OK_INLINE void stream_fence() { _mm_sfence(); }
#else
OK_INLINE void stream_fence() {}
#endif

// y[j] = f(j) for j in [0, n): computed (vectorized) into an aligned block,
// then streamed out in 16-byte stores; plain stores at unaligned ends.
template <class T, class F> OK_INLINE void stream_row(T* OK_RESTRICT y, int64_t n, F&& f) {
#if defined(__x86_64__)
  constexpr int64_t B = 256 / int64_t(sizeof(T));  // stream4 writes 4 values
  alignas(64) T buf[B];
  int64_t j = 0;
  for (; j < n && (reinterpret_cast<uintptr_t>(y + j) & 15) != 0; ++j) y[j] = f(j);
  for (; j + B <= n; j += B) {
#pragma omp simd
    for (int64_t k = 0; k < B; ++k) buf[k] = f(j + k);
    for (int64_t k = 0; k < B; k += 4) stream4(y + j + k, buf + k);
  }
  for (; j < n; ++j) y[j] = f(j);
#else
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] = f(j);
#endif
}

// y[j] = f(j) for j in [0, n): streamed when `stream`, else vector stores.
template <class T, class F> OK_INLINE void write_row(T* OK_RESTRICT y, int64_t n, bool stream, F&& f) {
  if (stream) {
    stream_row(y, n, f);
    return;
  }
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] = f(j);
}

// f(i) for i in [0, n), in parallel when `work` (elements touched) is large.
template <class F> void parallel_for(int64_t n, int64_t work, F&& f) {
#ifdef _OPENMP
  if (work >= kSerialBelow && n > 1 && max_threads() > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#endif
  (void)work;
  for (int64_t i = 0; i < n; ++i) f(i);
}

// f(r0, r1) over ranges of rows of `row_len` elements (about 16K elements a range).
template <class F> void parallel_ranges(int64_t rows, int64_t row_len, F&& f) {
  const int64_t per = std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(row_len, 1));
  const int64_t nr = (rows + per - 1) / per;
  parallel_for(nr, rows * row_len, [&](int64_t k) { f(k * per, std::min(rows, (k + 1) * per)); });
}

}  // namespace normcpu
}  // namespace optkern

// run_range(kernel, i0, i1) calls kernel(i) for i in [i0, i1), compiled once
// per ISA level (GCC target_clones needs plain functions, not templates),
// then fences the streamed stores of the range.
#define OK_NORM_CLONE_RANGE(Kernel)                                                   \
  OK_CLONES void run_range(const Kernel<float>& k, int64_t i0, int64_t i1) {          \
    for (int64_t i = i0; i < i1; ++i) k(i);                                           \
    optkern::normcpu::stream_fence();                                                 \
  }                                                                                   \
  OK_CLONES void run_range(const Kernel<double>& k, int64_t i0, int64_t i1) {         \
    for (int64_t i = i0; i < i1; ++i) k(i);                                           \
    optkern::normcpu::stream_fence();                                                 \
  }
