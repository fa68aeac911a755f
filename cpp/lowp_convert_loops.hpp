// The element loops of optkern._cpu's format conversions and SWALP quantizers (lowp.cpp), apart
// from their threads and Python checks: compiled per ISA level (OK_CLONES), where the x86-64-v3
// clone vectorizes what the SSE2 baseline cannot (floor / rint in double: a libm call there), and
// float32 -> float16 by F16C's vcvtps2ph where the CPU has it. Every loop computes exactly the
// scalar rule of rules/lowp.hpp for each element (tests/test_lowp.py, also with OPTKERN_PORTABLE=1;
// vcvtps2ph against f32_to_f16 over all 2^32 floats: tools/f16_exhaustive.cpp).
#pragma once
#include <cstdint>

#include "cpu_avx2.hpp"
#include "optkern/common.hpp"
#include "optkern/rules/lowp.hpp"
#if defined(OPTKERN_X86_AVX2)
#include <immintrin.h>
#endif

namespace optkern {
namespace lowp {

OK_CLONES inline void to_bf16_loop(const float* OK_RESTRICT x, uint16_t* OK_RESTRICT o, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = f32_to_bf16(x[i]);
}

OK_CLONES inline void to_f16_portable_loop(const float* OK_RESTRICT x, uint16_t* OK_RESTRICT o, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = f32_to_f16(x[i]);
}

#if defined(OPTKERN_X86_AVX2)
// vcvtps2ph with round-to-nearest-even: IEEE's conversion, subnormals and overflow included, and a
// NaN made quiet with its top payload bits -- f32_to_f16's results for every input.
__attribute__((target("avx2,f16c"))) inline void to_f16_f16c(const float* OK_RESTRICT x, uint16_t* OK_RESTRICT o,
                                                             int64_t n) {
  const int64_t n8 = n & ~int64_t(7);
  for (int64_t i = 0; i < n8; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + i), h);
  }
  to_f16_portable_loop(x + n8, o + n8, n - n8);
}
#endif

inline void to_f16_loop(const float* x, uint16_t* o, int64_t n) {
#if defined(OPTKERN_X86_AVX2)
  if (use_f16c()) return to_f16_f16c(x, o, n);
#endif
  to_f16_portable_loop(x, o, n);
}

// Stochastic rounding, w[i] element i's random word.
OK_CLONES inline void to_bf16_sr_loop(const float* OK_RESTRICT x, const uint32_t* OK_RESTRICT w,
                                      uint16_t* OK_RESTRICT o, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = f32_to_bf16_sr(x[i], w[i]);
}

OK_CLONES inline void to_f16_sr_loop(const float* OK_RESTRICT x, const uint32_t* OK_RESTRICT w,
                                     uint16_t* OK_RESTRICT o, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = f32_to_f16_sr(x[i], w[i]);
}

OK_CLONES inline void from_bf16_loop(const uint16_t* OK_RESTRICT h, float* OK_RESTRICT o, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = bf16_to_f32(h[i]);
}

OK_CLONES inline void from_f16_loop(const uint16_t* OK_RESTRICT h, float* OK_RESTRICT o, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = f16_to_f32(h[i]);
}

// x on grid g: rounded to nearest even (w null) or stochastically (w[i] element i's word). x and o
// may be the same array.
OK_CLONES inline void grid_loop(const Grid g, const float* x, const uint32_t* w, float* o, int64_t n) {
  if (w)
    for (int64_t i = 0; i < n; ++i) o[i] = quantize_grid(x[i], g, true, w[i]);
  else
    for (int64_t i = 0; i < n; ++i) o[i] = quantize_grid(x[i], g, false, 0u);
}

}  // namespace lowp
}  // namespace optkern
