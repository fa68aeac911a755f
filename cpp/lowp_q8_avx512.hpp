// The 8-bit map of rules/lowp.hpp sixteen elements at a time with AVX-512 (F, BW, DQ, VL; chosen
// at run time by lowp_q8.hpp before the AVX2 forms). The same algorithm as lowp_q8_avx2.hpp, lane
// for lane -- rules/lowp.hpp's encoder (kMap's tables, one FMA), the decode in dyn_decode_mag's
// order -- on twice the lanes, with masks where AVX2 needs compare-and-blend: the same codes and
// values, bit for bit, as the scalar functions (tests/test_lowp_q8.py, which also pins the AVX2
// forms with OPTKERN_NO_AVX512=1 and the forms without VBMI with OPTKERN_NO_AVX512_VBMI=1, and
// tests/test_hunt56b_q8_recip_rule.py over every float in [0, 1]).
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

// The lower decade g of each binade of the clamped range (avx2::encode_mag's (126 - binade) 1233 >>
// 12) and its 10^-(g+1), as 32-entry tables indexed by binade mod 32 (vpermt2d and vpermt2ps read
// an index's low five bits; binades 96 .. 127 hold the range: [2^-26, 1) for the 8-bit map,
// [2^-23, 1) for the 7-bit one): two lookups in place of the subtract, multiply, shift and lookup.
template <int M> struct BinadeTables {
  alignas(64) int32_t g[32];
  alignas(64) float next[32];
};
template <int M> constexpr BinadeTables<M> make_binade_tables() {
  BinadeTables<M> t{};
  for (int b = 96; b < 128; ++b) {
    const int g = ((126 - b) * 1233) >> 12;  // (b = 127 lies above the range: g = -1, unused)
    const int gc = g < 0 ? 0 : g > 7 ? 7 : g;
    t.g[b & 31] = gc;
    t.next[b & 31] = kMap<M>.next[gc];
  }
  return t;
}
template <int M> inline constexpr BinadeTables<M> kBinade = make_binade_tables<M>();

// The magnitude codes of 16 lanes y in an M-bit map (y <= 0 and NaN: code 0): dyn_encode_mag<M>,
// with Abs of |y| (the signed map: vrangeps takes max(|y|, lo) in one instruction, and returns lo
// for a NaN y -- it returns the other operand of a quiet NaN, and y = x r is never a signalling
// one -- as the scalar clamp does; the clamp's two ends commute for all other y).
template <int M, bool Abs> OK_AVX512 inline __m512i encode_codes(__m512 y) {
  const MapTables<M>& T = kMap<M>;
  const BinadeTables<M>& B = kBinade<M>;
  constexpr float kLo = M == 8 ? 1.4901161193847656e-08f : 1.1920928955078125e-07f;  // 2^-26, 2^-23
  static_assert(M == 7 || M == 8, "the binade tables cover [2^-32, 1)");
  const __m512 top = _mm512_set1_ps(0.99999994f), lo = _mm512_set1_ps(kLo);
  // (imm 0b1011: the larger magnitude, its sign cleared; min(top, y) keeps a NaN y as the scalar's,
  // which max(., lo) then makes lo)
  const __m512 xc = Abs ? _mm512_min_ps(_mm512_range_ps(y, lo, 0b1011), top)
                        : _mm512_max_ps(_mm512_min_ps(top, y), lo);
  const __m512i binade = _mm512_srli_epi32(_mm512_castps_si512(xc), 23);
  const __m512i g = _mm512_permutex2var_epi32(_mm512_load_si512(B.g), binade, _mm512_load_si512(B.g + 16));
  const __m512 next = _mm512_permutex2var_ps(_mm512_load_ps(B.next), binade, _mm512_load_ps(B.next + 16));
  const __mmask16 below = _mm512_cmp_ps_mask(xc, next, _CMP_LE_OQ);
  const __m512i e = _mm512_mask_add_epi32(g, below, g, _mm512_set1_epi32(1));
  const __m512 t = _mm512_fmadd_ps(xc, _mm512_permutexvar_ps(e, table(T.k)), _mm512_permutexvar_ps(e, table(T.l)));
  // t in [0.44, 2^M - 0.5]: the floor, whatever the MXCSR says
  return _mm512_cvt_roundps_epi32(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
}

// Byte codes (in 32-bit lanes) of 16 values y = x / s: signed map (sign bit + 7-bit magnitude) or
// 8-bit (the short loops; the 64-value loop narrows and signs four vectors at once).
template <bool Signed> OK_AVX512 inline __m512i encode16(__m512 y) {
  const __m512i m = encode_codes<Signed ? 7 : 8, Signed>(y);
  if constexpr (!Signed) return m;
  // 0x80 where y's sign bit is set and the magnitude code is not 0 (as AVX2's sign test)
  const __mmask16 neg = _mm512_movepi32_mask(_mm512_castps_si512(y)) & _mm512_test_epi32_mask(m, m);
  return _mm512_mask_or_epi32(m, neg, m, _mm512_set1_epi32(0x80));
}

// Byte 0 of the 64 lanes of c0..c3 in lane order (codes of encode_codes): two byte permutes of
// two vectors each and a blend (a pack of 32-bit lanes needs the shift first, and packs work within
// 128-bit lanes: a permute after them).
#define OK_VBMI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi,fma")))
OK_VBMI inline __m512i bytes0(__m512i c0, __m512i c1, __m512i c2, __m512i c3) {
  alignas(64) static constexpr uint8_t kIdx[64] = {
      0,  4,  8,  12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60,  64,  68,  72,  76,  80, 84,
      88, 92, 96, 100, 104, 108, 112, 116, 120, 124, 0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44,
      48, 52, 56, 60, 64, 68, 72, 76, 80, 84, 88, 92, 96, 100, 104, 108, 112, 116, 120, 124};
  const __m512i idx = _mm512_load_si512(kIdx);
  const __m512i lo = _mm512_permutex2var_epi8(c0, idx, c1), hi = _mm512_permutex2var_epi8(c2, idx, c3);
  return _mm512_mask_blend_epi8(__mmask64(0xffffffff00000000ull), lo, hi);
}

// avx2::encode's contract: codes of x[0, n) (n a multiple of 8) for r = RN(1 / s) (the form
// without VBMI, and encode_vbmi's last n % 64). A last group of eight runs under a mask.
template <bool Signed> OK_AVX512 inline void encode(const float* x, uint8_t* q, int64_t n, float r) {
  const __m512 rv = _mm512_set1_ps(r);
  int64_t i = 0;
  // four vectors per pass: independent dependency chains for the out-of-order core to overlap, and
  // their codes narrowed by two packs and one permute (packs work within 128-bit lanes: byte 4 j +
  // q of lane l is code 4 l + q of vector j) instead of four vpmovdb and two inserts (a loop of
  // sixteen at a time: ~10 % slower on Zen 4 without VBMI)
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  for (; i + 64 <= n; i += 64) {
    const __m512i c0 = encode16<Signed>(_mm512_mul_ps(_mm512_loadu_ps(x + i), rv));
    const __m512i c1 = encode16<Signed>(_mm512_mul_ps(_mm512_loadu_ps(x + i + 16), rv));
    const __m512i c2 = encode16<Signed>(_mm512_mul_ps(_mm512_loadu_ps(x + i + 32), rv));
    const __m512i c3 = encode16<Signed>(_mm512_mul_ps(_mm512_loadu_ps(x + i + 48), rv));
    // codes are in [0, 255]: the saturating packs are exact
    const __m512i b = _mm512_packus_epi16(_mm512_packus_epi32(c0, c1), _mm512_packus_epi32(c2, c3));
    _mm512_storeu_si512(q + i, _mm512_permutexvar_epi32(order, b));
  }
  for (; i < n; i += 16) {
    const __mmask16 lanes = n - i >= 16 ? __mmask16(0xffff) : __mmask16(0x00ff);
    const __m512i c = encode16<Signed>(_mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, x + i), rv));
    _mm512_mask_cvtepi32_storeu_epi8(q + i, lanes, c);  // codes are in [0, 255]: the truncation is exact
  }
}

// The same contract, 64 values a pass (VBMI: bytes0): four independent dependency chains for the
// out-of-order core to overlap, narrowed (and signed) as 64 bytes at once.
template <bool Signed> OK_VBMI inline void encode_vbmi(const float* x, uint8_t* q, int64_t n, float r) {
  constexpr int M = Signed ? 7 : 8;
  const __m512 rv = _mm512_set1_ps(r);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512 y0 = _mm512_mul_ps(_mm512_loadu_ps(x + i), rv), y1 = _mm512_mul_ps(_mm512_loadu_ps(x + i + 16), rv);
    const __m512 y2 = _mm512_mul_ps(_mm512_loadu_ps(x + i + 32), rv), y3 = _mm512_mul_ps(_mm512_loadu_ps(x + i + 48), rv);
    __m512i b = bytes0(encode_codes<M, Signed>(y0), encode_codes<M, Signed>(y1), encode_codes<M, Signed>(y2),
                       encode_codes<M, Signed>(y3));
    if constexpr (Signed) {  // 0x80 where y's sign bit is set and the magnitude code is not 0
      const __mmask64 neg = _cvtu64_mask64(uint64_t(_mm512_movepi32_mask(_mm512_castps_si512(y0))) |
                                           uint64_t(_mm512_movepi32_mask(_mm512_castps_si512(y1))) << 16 |
                                           uint64_t(_mm512_movepi32_mask(_mm512_castps_si512(y2))) << 32 |
                                           uint64_t(_mm512_movepi32_mask(_mm512_castps_si512(y3))) << 48);
      b = _mm512_mask_add_epi8(b, _mm512_mask_test_epi8_mask(neg, b, b), b, _mm512_set1_epi8(char(0x80)));
    }
    _mm512_storeu_si512(q + i, b);
  }
  if (i < n) encode<Signed>(x + i, q + i, n - i, r);
}

// avx2::block_scale on 16 lanes: the largest abs_bits (NaN, inf as 0) and whether any x < 0 (a running
// min: min keeps its second operand where either is NaN, and -0 is not below 0). Vector
// accumulators only: a mask accumulator (kor through a general register) made it 2.4x slower.
OK_AVX512 inline float block_scale_exact(const float* x, int64_t n) {
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

// The same, faster where the block holds no NaN or inf (as a step's states nearly always do): the
// max of |x|'s bits unfiltered and the min of x, accumulated a vector at a time (ScaleAcc: also by
// the fused 8-bit step, lowp_q8_fused.hpp); a max at or above inf's bits sends the block to
// block_scale_exact (below it, no element was NaN or inf and the maxima agree). The accumulated
// mins never hold NaN or -0 (min(v, lo) keeps lo then), so merging accumulators is exact, in any
// order.
struct ScaleAcc {
  __m512i amax;
  __m512 lo;
};
OK_AVX512 inline ScaleAcc scale_acc() { return {_mm512_setzero_si512(), _mm512_setzero_ps()}; }
OK_AVX512 inline void scale_add(ScaleAcc& a, __m512 v) {
  a.amax = _mm512_max_epi32(a.amax, _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
  a.lo = _mm512_min_ps(v, a.lo);
}
// The scale of the block x[0, n) whose values a0 and a1 accumulated between them.
OK_AVX512 inline float scale_of_acc(const ScaleAcc& a0, const ScaleAcc& a1, const float* x, int64_t n) {
  const uint32_t amax = uint32_t(_mm512_reduce_max_epi32(_mm512_max_epi32(a0.amax, a1.amax)));
  if (amax >= 0x7f800000u) return block_scale_exact(x, n);
  const bool neg = _mm512_cmp_ps_mask(_mm512_min_ps(a0.lo, a1.lo), _mm512_setzero_ps(), _CMP_LT_OQ) != 0;
  return lowp::scale_of(amax, neg);
}
// (two accumulators: independent chains)
OK_AVX512 inline float block_scale(const float* x, int64_t n) {
  ScaleAcc a0 = scale_acc(), a1 = scale_acc();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    scale_add(a0, _mm512_loadu_ps(x + i));
    scale_add(a1, _mm512_loadu_ps(x + i + 16));
  }
  for (; i < n; i += 16) {  // (n a multiple of 8; masked-off lanes load +0: neither max nor negative)
    const __mmask16 lanes = n - i >= 16 ? __mmask16(0xffff) : __mmask16(0x00ff);
    scale_add(a0, _mm512_maskz_loadu_ps(lanes, x + i));
  }
  return scale_of_acc(a0, a1, x, n);
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

// ---- decode by lookup (AVX512_VBMI) ----------------------------------------------------------
// The 256 values of a map, dyn_decode's own, as four byte planes (plane b: byte b of each value's
// bits): vpermt2b looks up 64 codes' bytes of one plane in a 128-entry half of it, so a code's
// value takes two permutes and a blend per plane (the signed map: one permute, decode_vbmi) and no
// arithmetic -- the same bits as the scalar decode by construction. (The arithmetic decode above: ~13 vector operations per 16
// codes, a fifth of an 8-bit Adam step on one Zen 4 thread; this one ~8: 31 per 64 codes.)
struct BytePlanes {
  alignas(64) uint8_t b[2][4][256];  // [signed][plane][code]
  BytePlanes() {
    for (int m = 0; m < 2; ++m)
      for (int c = 0; c < 256; ++c) {
        uint32_t u;
        const float v = dyn_decode(uint8_t(c), m == 1);
        std::memcpy(&u, &v, sizeof u);
        for (int p = 0; p < 4; ++p) b[m][p][c] = uint8_t(u >> (8 * p));
      }
  }
};
inline const BytePlanes& byte_planes() {
  static const BytePlanes t;
  return t;
}

// Plane `p`'s bytes of 64 codes: entries 0-127 or 128-255 by the code's bit 7.
OK_VBMI inline __m512i plane_bytes(const uint8_t* plane, __m512i c, __mmask64 high) {
  const __m512i lo = _mm512_permutex2var_epi8(_mm512_load_si512(plane), c, _mm512_load_si512(plane + 64));
  const __m512i hi = _mm512_permutex2var_epi8(_mm512_load_si512(plane + 128), c, _mm512_load_si512(plane + 192));
  return _mm512_mask_blend_epi8(high, lo, hi);
}

// 64 codes q[0, 64) -> values v[0..3] (16 each, in order), as dequantize(q[i], s) with s = |scale|
// (`planes`: the map's byte planes, Signed as the scale's sign). The bytes of four planes are
// interleaved into 32-bit values by unpacks, which work within 128-bit lanes: the codes are
// first permuted so that lane l of output vector g gets codes 16 g + 4 l .. + 3 (position
// 16 l + 4 g + i of the permuted codes holds code 16 g + 4 l + i).
alignas(64) inline constexpr uint8_t kDecodeOrder[64] = {
    0, 1, 2,  3,  16, 17, 18, 19, 32, 33, 34, 35, 48, 49, 50, 51, 4,  5,  6,  7,  20, 21,
    22, 23, 36, 37, 38, 39, 52, 53, 54, 55, 8,  9,  10, 11, 24, 25, 26, 27, 40, 41, 42, 43,
    56, 57, 58, 59, 12, 13, 14, 15, 28, 29, 30, 31, 44, 45, 46, 47, 60, 61, 62, 63};
template <bool Signed>
OK_VBMI inline void decode64(const uint8_t* q, const uint8_t (&planes)[4][256], __m512 s, __m512 (&v)[4]) {
  const __m512i c = _mm512_permutexvar_epi8(_mm512_load_si512(kDecodeOrder), _mm512_loadu_si512(q));
  __m512i b0, b1, b2, b3;
  if constexpr (Signed) {
    // dyn_decode(c, true) is dyn_decode(c & 0x7f, true) with the sign of bit 7 (-0 for 0x80):
    // a lookup in the first 128 entries (vpermt2b reads an index's low seven bits), then bit 7
    // of each code into its value's top byte -- no second lookup and no blend per plane
    b0 = _mm512_permutex2var_epi8(_mm512_load_si512(planes[0]), c, _mm512_load_si512(planes[0] + 64));
    b1 = _mm512_permutex2var_epi8(_mm512_load_si512(planes[1]), c, _mm512_load_si512(planes[1] + 64));
    b2 = _mm512_permutex2var_epi8(_mm512_load_si512(planes[2]), c, _mm512_load_si512(planes[2] + 64));
    b3 = _mm512_permutex2var_epi8(_mm512_load_si512(planes[3]), c, _mm512_load_si512(planes[3] + 64));
    b3 = _mm512_ternarylogic_epi32(b3, c, _mm512_set1_epi8(char(0x80)), 0xF8);  // b3 | (c & 0x80)
  } else {
    const __mmask64 high = _mm512_movepi8_mask(c);
    b0 = plane_bytes(planes[0], c, high), b1 = plane_bytes(planes[1], c, high);
    b2 = plane_bytes(planes[2], c, high), b3 = plane_bytes(planes[3], c, high);
  }
  const __m512i w01lo = _mm512_unpacklo_epi8(b0, b1), w01hi = _mm512_unpackhi_epi8(b0, b1);
  const __m512i w23lo = _mm512_unpacklo_epi8(b2, b3), w23hi = _mm512_unpackhi_epi8(b2, b3);
  const __m512i u[4] = {_mm512_unpacklo_epi16(w01lo, w23lo), _mm512_unpackhi_epi16(w01lo, w23lo),
                        _mm512_unpacklo_epi16(w01hi, w23hi), _mm512_unpackhi_epi16(w01hi, w23hi)};
  for (int g = 0; g < 4; ++g)  // (a signed value times s = -scale > 0: the sign as the scalar's)
    v[g] = _mm512_mul_ps(_mm512_castsi512_ps(u[g]), s);
}

// x[0, n) = dequantize(q[i], scale) for n a multiple of 64 (s = |scale|).
template <bool Signed> OK_VBMI inline void decode_vbmi(const uint8_t* q, float* x, int64_t n, float s) {
  const uint8_t(&planes)[4][256] = byte_planes().b[Signed ? 1 : 0];
  const __m512 sv = _mm512_set1_ps(s);
  for (int64_t i = 0; i < n; i += 64) {
    __m512 v[4];
    decode64<Signed>(q + i, planes, sv, v);
    for (int g = 0; g < 4; ++g) _mm512_storeu_ps(x + i + 16 * g, v[g]);
  }
}

#undef OK_VBMI
#undef OK_AVX512

}  // namespace avx512
}  // namespace lowp
}  // namespace optkern

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
