// The 8-bit map of rules/lowp.hpp sixteen elements at a time with AVX-512 (F, BW, DQ, VL; chosen
// at run time by lowp_q8.hpp before the AVX2 forms). The same algorithm as lowp_q8_avx2.hpp, lane
// for lane -- its tables (MapTables, DecodeTables), its division-free index with the same error
// bound and flag (kTol), its decode in dyn_decode_mag's order -- on twice the lanes, with masks
// where AVX2 needs compare-and-blend: the same codes and values, bit for bit, as the scalar
// functions (tests/test_lowp_q8.py, which also pins the AVX2 forms with OPTKERN_NO_AVX512=1, and
// tools/q8_exhaustive.cpp over every float in [0, 1]).
//
// Why: the 8-bit step is compute bound (bench/RESULTS.md): on an AVX-512 Xeon the AVX2 encoder
// took ~0.9 ns and the decoder ~0.5 ns per element and thread, most of an 8-bit Adam step.
#pragma once
#include "lowp_q8_avx2.hpp"
#if defined(OPTKERN_Q8_AVX2)
#define OPTKERN_Q8_AVX512 1
#include <immintrin.h>

#include <cstdint>
#include <cstring>

// GCC 12's AVX-512 intrinsics initialise their "undefined" source operand from itself, which
// -Wmaybe-uninitialized and -Wuninitialized report at every use (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace optkern {
namespace lowp {
namespace avx512 {

#define OK_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))

// An 8-entry table in both 256-bit halves: vpermps by an index in [0, 8) reads it in any lane.
OK_AVX512 inline __m512 table(const float* t) { return _mm512_broadcast_f32x8(_mm256_loadu_ps(t)); }

// avx2::encode_mag<M> on 16 lanes (its comments give the why of each step).
template <int M> OK_AVX512 inline __m512i encode_mag(__m512 y, __mmask16& suspect) {
  const MapTables<M>& T = kMap<M>;
  constexpr float kLo = M == 8 ? 1.4901161193847656e-08f : 1.1920928955078125e-07f;  // 2^-26, 2^-23
  // (operand order as in AVX2: min keeps a NaN y, max then makes it kLo)
  const __m512 xc = _mm512_max_ps(_mm512_min_ps(_mm512_set1_ps(0.99999994f), y), _mm512_set1_ps(kLo));
  const __m512i binade = _mm512_srli_epi32(_mm512_castps_si512(xc), 23);
  const __m512i g = _mm512_srai_epi32(
      _mm512_mullo_epi32(_mm512_sub_epi32(_mm512_set1_epi32(126), binade), _mm512_set1_epi32(1233)), 12);
  const __m512 next = _mm512_permutexvar_ps(g, table(T.next));
  const __mmask16 below = _mm512_cmp_ps_mask(xc, next, _CMP_LE_OQ);
  const __m512i e = _mm512_mask_add_epi32(g, below, g, _mm512_set1_epi32(1));
  const __m512 t = _mm512_add_ps(_mm512_mul_ps(xc, _mm512_permutexvar_ps(e, table(T.k))),
                                 _mm512_permutexvar_ps(e, table(T.l)));
  const __m512 ft = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 dist = _mm512_abs_ps(_mm512_sub_ps(t, ft));
  suspect = _mm512_cmp_ps_mask(dist, _mm512_set1_ps(kTol), _CMP_GE_OQ);
  return _mm512_cvttps_epi32(ft);
}

// Byte codes (in 32-bit lanes) of 16 values y = x / s: signed map (sign bit + 7-bit magnitude) or 8-bit.
template <bool Signed> OK_AVX512 inline __m512i encode16(__m512 y, __mmask16& suspect) {
  if constexpr (Signed) {
    const __m512i m = encode_mag<7>(_mm512_abs_ps(y), suspect);
    // 0x80 where y's sign bit is set and the magnitude code is not 0 (as AVX2's sign test)
    const __mmask16 neg = _mm512_movepi32_mask(_mm512_castps_si512(y)) & _mm512_test_epi32_mask(m, m);
    return _mm512_mask_or_epi32(m, neg, m, _mm512_set1_epi32(0x80));
  } else {
    return encode_mag<8>(y, suspect);
  }
}

// avx2::encode's contract: codes of x[0, n) (n a multiple of 8), bit j of sus[i / 8] marks
// element i + j for the scalar quantize; returns whether any is marked. A last group of eight
// runs under a mask (the masked-off lanes load 0: code 0, never flagged).
template <bool Signed> OK_AVX512 inline bool encode(const float* x, uint8_t* q, int64_t n, float r, uint8_t* sus) {
  const __m512 rv = _mm512_set1_ps(r);
  unsigned any = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lanes = n - i >= 16 ? __mmask16(0xffff) : __mmask16(0x00ff);
    __mmask16 s;
    const __m512i c = encode16<Signed>(_mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, x + i), rv), s);
    _mm512_mask_cvtepi32_storeu_epi8(q + i, lanes, c);  // codes are in [0, 255]: the truncation is exact
    const unsigned m = unsigned(s) & unsigned(lanes);
    sus[i / 8] = uint8_t(m);
    if (lanes == 0xffff) sus[i / 8 + 1] = uint8_t(m >> 8);
    any |= m;
  }
  return any != 0;
}

// avx2::block_scale on 16 lanes: the largest abs_bits (NaN, inf as 0) and whether any x < 0 (a running
// min: min keeps its second operand where either is NaN, and -0 is not below 0). Vector
// accumulators only: a mask accumulator (kor through a general register) made it 2.4x slower.
OK_AVX512 inline float block_scale(const float* x, int64_t n) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  __m512i amax = _mm512_setzero_si512();
  __m512 lo = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lanes = n - i >= 16 ? __mmask16(0xffff) : __mmask16(0x00ff);
    const __m512 v = _mm512_maskz_loadu_ps(lanes, x + i);  // masked-off lanes: +0, neither max nor negative
    const __m512i a = _mm512_and_si512(_mm512_castps_si512(v), abs_mask);
    amax = _mm512_max_epi32(amax, _mm512_maskz_mov_epi32(_mm512_cmplt_epi32_mask(a, inf), a));
    lo = _mm512_min_ps(v, lo);
  }
  const bool neg = _mm512_cmp_ps_mask(lo, _mm512_setzero_ps(), _CMP_LT_OQ) != 0;
  return lowp::scale_of(uint32_t(_mm512_reduce_max_epi32(amax)), neg);
}

// avx2::decode_mag<M> on 16 lanes (lanes with c = 0 give garbage: the caller masks them).
template <int M> OK_AVX512 inline __m512 decode_mag(__m512i c) {
  const avx2::DecodeTables<M>& T = avx2::kDecode<M>;
  const __m512 fc = _mm512_cvtepi32_ps(c);  // exact
  const __m512i e = _mm512_sub_epi32(_mm512_set1_epi32(127 + M - 1), _mm512_srli_epi32(_mm512_castps_si512(fc), 23));
  const __m512 f1 = _mm512_add_ps(fc, _mm512_permutexvar_ps(e, table(T.one_minus_two_f)));
  const __m512 frac =
      _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.9f), f1), _mm512_permutexvar_ps(e, table(T.inv_two_f)));
  return _mm512_mul_ps(_mm512_permutexvar_ps(e, table(T.p)), _mm512_add_ps(_mm512_set1_ps(0.1f), frac));
}

// x[0, n) = dequantize(q[i], scale) (n a multiple of 8; a last group of eight under a mask).
template <bool Signed> OK_AVX512 inline void decode(const uint8_t* q, float* x, int64_t n, float s) {
  const __m512 sv = _mm512_set1_ps(s);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lanes = n - i >= 16 ? __mmask16(0xffff) : __mmask16(0x00ff);
    const __m512i c = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(lanes, q + i));
    __m512 v;
    if constexpr (Signed) {
      const __m512i mag = _mm512_and_si512(c, _mm512_set1_epi32(0x7f));
      const __m512 m = _mm512_maskz_mov_ps(_mm512_test_epi32_mask(mag, mag), decode_mag<7>(mag));
      const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x80)), 24);
      v = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(m), sign));  // (-m) s: the sign flips exactly
    } else {
      v = _mm512_maskz_mov_ps(_mm512_test_epi32_mask(c, c), decode_mag<8>(c));
    }
    _mm512_mask_storeu_ps(x + i, lanes, _mm512_mul_ps(v, sv));
  }
}

#undef OK_AVX512

}  // namespace avx512
}  // namespace lowp
}  // namespace optkern

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
