// Non-temporal (streamed) stores for large outputs: the norms' outputs and the L-BFGS push's new
// history pair. A streamed line is written once instead of first being read (write-allocate),
// and does not evict what the next pass reads from the cache.
#pragma once
#include <cstddef>
#include <cstdint>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "optkern/common.hpp"

#if defined(__GNUC__)
#define OK_INLINE inline __attribute__((always_inline))
#else
#define OK_INLINE inline
#endif

namespace optkern {
namespace streaming {

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

// 1 when v is ±inf or NaN (its exponent field all ones), else 0: integer operations, whose OR (one
// cycle) vectorizes cheaply. (A running float sum of v - v in the loop waited on the add's latency:
// batch norm's dx pass ran up to 1.7x slower.)
OK_INLINE uint32_t nonfinite_bit(float v) {
  uint32_t u;
  __builtin_memcpy(&u, &v, sizeof u);
  return (u & 0x7f800000u) == 0x7f800000u;
}
OK_INLINE uint64_t nonfinite_bit(double v) {
  uint64_t u;
  __builtin_memcpy(&u, &v, sizeof u);
  return (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
}

// y[j] = f(j) for j in [0, n): computed (vectorized) into an aligned block,
// then streamed out in 16-byte stores; plain stores at unaligned ends. With Check, returns whether
// every value written is finite (write_row_finite).
template <bool Check = false, class T, class F> OK_INLINE bool stream_row(T* OK_RESTRICT y, int64_t n, F&& f) {
  decltype(nonfinite_bit(T())) z = 0;
#if defined(__x86_64__)
  constexpr int64_t B = 256 / int64_t(sizeof(T));  // stream4 writes 4 values
  alignas(64) T buf[B];
  int64_t j = 0;
  for (; j < n && (reinterpret_cast<uintptr_t>(y + j) & 15) != 0; ++j) {
    const T v = f(j);
    y[j] = v;
    if constexpr (Check) z |= nonfinite_bit(v);
  }
  for (; j + B <= n; j += B) {
#pragma omp simd reduction(| : z)
    for (int64_t k = 0; k < B; ++k) {
      const T v = f(j + k);
      buf[k] = v;
      if constexpr (Check) z |= nonfinite_bit(v);
    }
    for (int64_t k = 0; k < B; k += 4) stream4(y + j + k, buf + k);
  }
  for (; j < n; ++j) {
    const T v = f(j);
    y[j] = v;
    if constexpr (Check) z |= nonfinite_bit(v);
  }
#else
#pragma omp simd reduction(| : z)
  for (int64_t j = 0; j < n; ++j) {
    const T v = f(j);
    y[j] = v;
    if constexpr (Check) z |= nonfinite_bit(v);
  }
#endif
  return z == 0;
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

// write_row, returning whether every value written is finite (the norms' backward redoes a group
// whose dx is not: rules/norm.hpp), from nonfinite_bit in the same vector loop, into W lanes folded
// in a tree at the end (lane_sums.hpp: one running OR made the batch-norm dx loop wait on it).
template <class T, class F> OK_INLINE bool write_row_finite(T* OK_RESTRICT y, int64_t n, bool stream, F&& f) {
  if (stream) return stream_row<true>(y, n, f);
  using U = decltype(nonfinite_bit(T()));
  constexpr int64_t W = 128 / int64_t(sizeof(T));
  if (n < 8 * W) {  // (short runs: one OR, whose chain is short, and no lanes to clear and fold)
    U z = 0;
#pragma omp simd reduction(| : z)
    for (int64_t j = 0; j < n; ++j) {
      const T v = f(j);
      y[j] = v;
      z |= nonfinite_bit(v);
    }
    return z == 0;
  }
  U z[W] = {};
  int64_t j = 0;
  for (; j + W <= n; j += W) {
#pragma omp simd
    for (int64_t k = 0; k < W; ++k) {
      const T v = f(j + k);
      y[j + k] = v;
      z[k] |= nonfinite_bit(v);
    }
  }
  for (int64_t k = 0; j < n; ++j, ++k) {  // (the tail: k < W)
    const T v = f(j);
    y[j] = v;
    z[k] |= nonfinite_bit(v);
  }
  for (int64_t w = W / 2; w > 0; w /= 2)
    for (int64_t k = 0; k < w; ++k) z[k] |= z[k + w];
  return z[0] == 0;
}

}  // namespace streaming
}  // namespace optkern
