// The bf16 stores of the CPU stage loop (lowp_loop.hpp) sixteen lanes at a time with AVX-512 (F,
// BW, VL; chosen at run time, OPTKERN_NO_AVX512=1 or OPTKERN_PORTABLE=1 turn them off): rules/
// lowp.hpp's f32_to_bf16 (nearest even) and f32_to_bf16_sr (stochastic), the same bits lane for
// lane. Why: GCC vectorized the scalar forms with both special cases (NaN; a value that rounds to
// inf) blended into every lane; the bf16-state step's two stochastic stores took a quarter of its
// time on one Zen 4 thread (perf). Here the special cases run only for a vector that holds one.
//
// f32_to_bf16_sr for a = |x| bits below 0x7f7f8000 (every finite value that nearest-even keeps
// finite): r = (u + rnd16) >> 16 cannot carry into the sign (a + rnd16 < 0x7f808000), so r is the
// sign above ((a + rnd16) >> 16) <= 0x7f80, and r - 1 where that is 0x7f80 is min(., 0x7f7f).
#pragma once
#include "cpu_avx2.hpp"
#if defined(OPTKERN_X86_AVX2)
#define OPTKERN_BF16_AVX512 1
#include <immintrin.h>

#include <cstdint>

// (GCC 12's AVX-512 intrinsics and -Wmaybe-uninitialized: see lowp_q8_avx512.hpp)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace optkern {
namespace lowp {
namespace avx512 {

#define OK_AVX512_BF __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

// f32_to_bf16 of 16 lanes of bits u (in 32-bit lanes): (u + 0x7fff + lowest kept bit) >> 16, NaN
// (|u| > inf's bits) as (u >> 16) | 0x40.
OK_AVX512_BF inline __m512i bf16_rne16(__m512i u) {
  const __m512i top = _mm512_srli_epi32(u, 16);
  const __m512i bias = _mm512_add_epi32(_mm512_and_si512(top, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x7fff));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
  const __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(0x7f800000));
  return _mm512_mask_or_epi32(r, nan, top, _mm512_set1_epi32(0x40));
}

// f32_to_bf16_sr of 16 lanes of bits u with rs = the 16 random bits it adds (rnd >> 16).
OK_AVX512_BF inline __m512i bf16_sr16(__m512i u, __m512i rs) {
  const __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __m512i mag = _mm512_min_epu32(_mm512_srli_epi32(_mm512_add_epi32(a, rs), 16), _mm512_set1_epi32(0x7f7f));
  // mag | (u >> 16 & 0x8000)
  const __m512i r = _mm512_ternarylogic_epi32(mag, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x8000), 0xF8);
  const __mmask16 big = _mm512_cmpge_epu32_mask(a, _mm512_set1_epi32(0x7f7f8000));
  if (big == 0) return r;
  return _mm512_mask_mov_epi32(r, big, bf16_rne16(u));  // NaN, inf, and what rounds to inf either way
}

// Lanes [i, i + 16) of n: all of them, or the last n - i.
OK_AVX512_BF inline __mmask16 lanes16(int64_t i, int64_t n) {
  return n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1u);
}

// The bf16 bits of 16 + 16 lanes (each below 2^16) into out[0, 32): one pack and one permute, not
// two vpmovdw to memory (masked or not, a slow store on Zen 4: the first form of these loops spent
// most of its time there). packs work within 128-bit lanes: qword 2 l holds a's lanes 4 l .. 4 l +
// 3, qword 2 l + 1 b's; the saturation is exact (0 <= x < 2^16).
OK_AVX512_BF inline void store32(uint16_t* out, __m512i a, __m512i b) {
  const __m512i packed = _mm512_packus_epi32(a, b);
  _mm512_storeu_si512(out, _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), packed));
}

// out[i] = f32_to_bf16(x[i]) for i in [0, n).
OK_AVX512_BF inline void store_bf16_rne(uint16_t* out, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    store32(out + i, bf16_rne16(_mm512_loadu_si512(x + i)), bf16_rne16(_mm512_loadu_si512(x + i + 16)));
  for (; i < n; i += 16) {
    const __mmask16 m = lanes16(i, n);
    _mm256_mask_storeu_epi16(out + i, m, _mm512_cvtepi32_epi16(bf16_rne16(_mm512_maskz_loadu_epi32(m, x + i))));
  }
}

// The same with AVX512_BF16 (cpu_avx2.hpp's use_avx512_bf16): vcvtne2ps2bf16 rounds to nearest even
// as f32_to_bf16 does, infinities and NaNs included ((u >> 16) | 0x40), but reads a subnormal as a
// zero of its sign; a pair of vectors holding one takes bf16_rne16. One instruction for 32 values
// where bf16_rne16 takes ~6 a vector and store32 two more (tools/bf16_exhaustive.cpp: all 2^32 inputs).
#define OK_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
OK_AVX512_BF16 inline void store_bf16_rne_cvt(uint16_t* out, const float* x, int64_t n) {
  constexpr int kSubnormal = 0x20;  // vfpclassps: denormal
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
    if ((_mm512_fpclass_ps_mask(a, kSubnormal) | _mm512_fpclass_ps_mask(b, kSubnormal)) == 0)
      _mm512_storeu_si512(out + i, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a)));  // (b: the high half)
    else
      store32(out + i, bf16_rne16(_mm512_castps_si512(a)), bf16_rne16(_mm512_castps_si512(b)));
  }
  if (i < n) store_bf16_rne(out + i, x + i, n - i);
}
#undef OK_AVX512_BF16

// out[i] = f32_to_bf16_sr(x[i], bits) for i in [0, n), bits = rnd[i] (High) or rnd[i] << 16 (the
// low half of the word: lowp_storage.hpp's state_bits), whose top 16 bits the rounding adds.
template <bool High> OK_AVX512_BF inline __m512i bf16_sr16_at(const float* x, const uint32_t* rnd, __mmask16 m) {
  const __m512i w = _mm512_maskz_loadu_epi32(m, rnd);
  const __m512i rs = High ? _mm512_srli_epi32(w, 16) : _mm512_and_si512(w, _mm512_set1_epi32(0xffff));
  return bf16_sr16(_mm512_maskz_loadu_epi32(m, x), rs);
}
template <bool High> OK_AVX512_BF inline void store_bf16_sr(uint16_t* out, const float* x, const uint32_t* rnd, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    store32(out + i, bf16_sr16_at<High>(x + i, rnd + i, 0xffff), bf16_sr16_at<High>(x + i + 16, rnd + i + 16, 0xffff));
  for (; i < n; i += 16) {
    const __mmask16 m = lanes16(i, n);
    _mm256_mask_storeu_epi16(out + i, m, _mm512_cvtepi32_epi16(bf16_sr16_at<High>(x + i, rnd + i, m)));
  }
}

#undef OK_AVX512_BF

}  // namespace avx512
}  // namespace lowp
}  // namespace optkern

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
