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

}  // namespace streaming
}  // namespace optkern
