// The 8-bit map of rules/lowp.hpp, eight elements at a time with AVX2 (x86-64 with AVX2 + FMA,
// chosen at run time by lowp_q8.hpp; elsewhere the portable loops there run). Same codes and
// values, bit for bit, as the scalar functions (tests/test_lowp_q8.py pins the step's loop to
// optkern.lowp.quantize_blockwise / dequantize_blockwise, which run them).
//
// Why by hand: the map costs GCC's vectorized select chains ~1.7 ns per encoded and ~0.6 ns per
// decoded element on Zen 3 (spilled chains of 10^-e and 2^F selects), which made an 8-bit Adam
// step 10x slower than the fp32 one. Here everything that depends on the decade e comes from
// 8-entry tables indexed by e in one vpermps each:
//   encode: rules/lowp.hpp's rule itself, y = x RN(1 / s), code = floor(y K_e + L_e) by one FMA
//     (no division: the rule was redefined so, 56th session; before, an exact form with three
//     divisions per value was the definition and this loop flagged near-ties for it).
//   decode: dyn_decode_mag's own operations in its order (the product by 2^-F is exact, so a
//     contraction cannot change a value).
#pragma once
#include "cpu_avx2.hpp"
#if defined(OPTKERN_X86_AVX2)
#define OPTKERN_Q8_AVX2 1
#include <immintrin.h>

#include <cstdint>

#include "optkern/lowp_storage.hpp"
#include "optkern/rules/lowp.hpp"

namespace optkern {
namespace lowp {
namespace avx2 {

#define OK_AVX2 __attribute__((target("avx2,fma")))

// Magnitude codes of 8 values y (y <= 0 and NaN: code 0) of an M-bit map: dyn_encode_mag<M>'s
// operations lane for lane (its clamp, decade and FMA; kMap's tables).
template <int M> OK_AVX2 inline __m256i encode_mag(__m256 y) {
  const MapTables<M>& T = kMap<M>;
  // min(., y) keeps NaN (its second operand), max(., lo) then makes it lo, as the scalar's
  constexpr float kLo = M == 8 ? 1.4901161193847656e-08f : 1.1920928955078125e-07f;  // 2^-26, 2^-23
  const __m256 xc = _mm256_max_ps(_mm256_min_ps(_mm256_set1_ps(0.99999994f), y), _mm256_set1_ps(kLo));
  const __m256i binade = _mm256_srli_epi32(_mm256_castps_si256(xc), 23);  // j + 127
  const __m256i g = _mm256_srai_epi32(
      _mm256_mullo_epi32(_mm256_sub_epi32(_mm256_set1_epi32(126), binade), _mm256_set1_epi32(1233)), 12);
  const __m256 next = _mm256_permutevar8x32_ps(_mm256_loadu_ps(T.next), g);
  const __m256i e = _mm256_sub_epi32(g, _mm256_castps_si256(_mm256_cmp_ps(xc, next, _CMP_LE_OQ)));
  const __m256 kv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(T.k), e);
  const __m256 lv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(T.l), e);
  // t in [0.44, 2^M - 0.5]: truncation is the floor
  return _mm256_cvttps_epi32(_mm256_fmadd_ps(xc, kv, lv));
}

// Byte codes of 8 values y = x / s (signed map: sign bit + 7-bit magnitude; else 8-bit).
template <bool Signed> OK_AVX2 inline __m256i encode8(__m256 y) {
  if constexpr (Signed) {
    const __m256i m = encode_mag<7>(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), y));
    // the sign bit as 0x80, kept where the magnitude code is not 0 (y < 0 there)
    const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(y), 24), _mm256_set1_epi32(0x80));
    return _mm256_or_si256(m, _mm256_and_si256(sign, _mm256_cmpgt_epi32(m, _mm256_setzero_si256())));
  } else {
    return encode_mag<8>(y);
  }
}

// Codes of x[0, n) (n a multiple of 8) for a block with scale s = |scale| and r = RN(1 / s)
// (block_recip's pre = 1).
template <bool Signed> OK_AVX2 inline void encode(const float* x, uint8_t* q, int64_t n, float r) {
  const __m256 rv = _mm256_set1_ps(r);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {  // 32 codes packed into one store
    __m256i c[4];
    for (int k = 0; k < 4; ++k) c[k] = encode8<Signed>(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), rv));
    // codes are in [0, 255]: the 32 -> 16-bit pack cannot saturate, the 16 -> 8-bit one is
    // unsigned; both interleave the 128-bit lanes, which the final permutation undoes
    const __m256i w = _mm256_packus_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                        _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
  for (; i < n; i += 8) {
    const __m256i v = encode8<Signed>(_mm256_mul_ps(_mm256_loadu_ps(x + i), rv));
    const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(_mm256_packs_epi32(v, v), v),
                                                  _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm256_castsi256_si128(b));
  }
}

// q8_block_scale of x[0, n) (n a multiple of 8) in one pass: the largest abs_bits (NaN, inf as 0)
// and whether any x < 0, into lowp::scale_of.
OK_AVX2 inline float block_scale(const float* x, int64_t n) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), big = _mm256_set1_epi32(0x7f7fffff);
  __m256i amax = _mm256_setzero_si256();
  __m256 neg = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256i a = _mm256_and_si256(_mm256_castps_si256(v), abs_mask);
    amax = _mm256_max_epi32(amax, _mm256_andnot_si256(_mm256_cmpgt_epi32(a, big), a));
    neg = _mm256_or_ps(neg, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
  }
  __m128i m = _mm_max_epi32(_mm256_castsi256_si128(amax), _mm256_extracti128_si256(amax, 1));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0x4e));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0xb1));
  return lowp::scale_of(uint32_t(_mm_cvtsi128_si32(m)), _mm256_movemask_ps(neg) != 0);
}

// Per-decade constants of the decoder: 10^-e, 2^-F and 1 - 2^F (F = M - 1 - e: the leading
// one of the code).
template <int M> struct DecodeTables {
  float p[8], inv_two_f[8], one_minus_two_f[8];
  constexpr DecodeTables() : p(), inv_two_f(), one_minus_two_f() {
    constexpr float kPow10[8] = {1.0f, 0.1f, 0.01f, 1e-3f, 1e-4f, 1e-5f, 1e-6f, 1e-7f};  // = pow10_neg
    for (int e = 0; e < 8; ++e) {
      const float two = float(1 << (e < M ? M - 1 - e : 0));
      p[e] = kPow10[e];
      inv_two_f[e] = 1.0f / two;
      one_minus_two_f[e] = 1.0f - two;
    }
  }
};
template <int M> inline constexpr DecodeTables<M> kDecode{};

// Values of M-bit magnitude codes c >= 1 (lanes with c = 0 give garbage: the caller masks them):
// dyn_decode_mag's p (0.1 + 0.9 (f + 1) 2^-F) with f + 1 = c + 1 - 2^F, exact.
template <int M> OK_AVX2 inline __m256 decode_mag(__m256i c) {
  const DecodeTables<M>& T = kDecode<M>;
  const __m256 fc = _mm256_cvtepi32_ps(c);  // exact
  // e = M - 1 - (leading one of c), from the exponent field of float(c)
  const __m256i e = _mm256_sub_epi32(_mm256_set1_epi32(127 + M - 1), _mm256_srli_epi32(_mm256_castps_si256(fc), 23));
  const __m256 f1 = _mm256_add_ps(fc, _mm256_permutevar8x32_ps(_mm256_loadu_ps(T.one_minus_two_f), e));
  const __m256 frac = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.9f), f1),
                                    _mm256_permutevar8x32_ps(_mm256_loadu_ps(T.inv_two_f), e));
  return _mm256_mul_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(T.p), e), _mm256_add_ps(_mm256_set1_ps(0.1f), frac));
}

// x[0, n) = dequantize(q[i], scale) (n a multiple of 8).
template <bool Signed> OK_AVX2 inline void decode(const uint8_t* q, float* x, int64_t n, float s) {
  const __m256 sv = _mm256_set1_ps(s);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
    if constexpr (Signed) {
      const __m256i mag = _mm256_and_si256(c, _mm256_set1_epi32(0x7f));
      const __m256 zero = _mm256_castsi256_ps(_mm256_cmpeq_epi32(mag, _mm256_setzero_si256()));
      const __m256 m = _mm256_andnot_ps(zero, decode_mag<7>(mag));
      const __m256 sign = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x80)), 24));
      _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_xor_ps(m, sign), sv));  // (-m) s: the sign flips exactly
    } else {
      const __m256 zero = _mm256_castsi256_ps(_mm256_cmpeq_epi32(c, _mm256_setzero_si256()));
      _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_andnot_ps(zero, decode_mag<8>(c)), sv));
    }
  }
}

#undef OK_AVX2

}  // namespace avx2
}  // namespace lowp
}  // namespace optkern
#endif
