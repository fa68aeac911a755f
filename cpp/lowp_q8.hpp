// The 8-bit state map of rules/lowp.hpp in loop-friendly forms for the CPU loop (lowp_loop.hpp),
// bit for bit the scalar functions (tests/test_lowp_q8.py pins the loop to
// optkern.lowp.quantize_blockwise / dequantize_blockwise, which run the scalar functions):
//   decode: dyn_decode_mag<M>'s own float operations in the same order, with branches turned
//   into selects (and a division by 2^F into the equal product by 2^-F) so that a block
//   vectorizes. A product that may meet an addition is exact (by a power of two), so no compiler
//   contraction into an FMA can change a result. encode: rules/lowp.hpp's quantize itself (the
//   block's reciprocal once, a product and an FMA per value), on 8 or 16 lanes. Checked against
//   the scalar functions: decode for all 256 codes of both maps, encode over every float in
//   [0, 1] (tests/test_hunt56b_q8_recip_rule.py), NaN, inf.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "lowp_q8_avx512.hpp"
#include "optkern/lowp_storage.hpp"
#include "optkern/rules/lowp.hpp"

namespace optkern {
namespace lowp {

// The vector forms' scale s of x[0, n) made whole: s = 0 means no finite non-zero value, and then
// its infs, if any, set the scale (rare: a plain pass).
inline float q8_scale_infs(float s, const float* x, int64_t n) {
  if (s != 0.0f) return s;
  uint32_t flags = 0;
  for (int64_t i = 0; i < n; ++i) flags |= block_flags(x[i]);
  return scale_of(0u, flags);
}

// The block's scale, as optkern.lowp.quantize_blockwise takes it: lowp::scale_of over the
// abs_bits of its values (optkern/lowp_storage.hpp: the largest finite |x|, and whether
// any x < 0, or any +-inf where no finite value is non-zero; the integer max vectorizes).
inline float q8_block_scale(const float* x, int64_t n) {
  uint32_t amax = 0, flags = 0;
#if defined(OPTKERN_Q8_AVX2)
  if (n % 8 == 0 && (use_avx512() || use_avx2()))
    return q8_scale_infs(use_avx512() ? avx512::block_scale(x, n) : avx2::block_scale(x, n), x, n);
#endif
  for (int64_t i = 0; i < n; ++i) {  // (one reduction per loop: GCC vectorizes each alone)
    const uint32_t a = abs_bits(x[i]);
    amax = amax > a ? amax : a;
  }
  for (int64_t i = 0; i < n; ++i) flags |= block_flags(x[i]);
  return scale_of(amax, flags);
}

// A block of n values -> codes with the block's scale (as lowp::quantize(x[i], scale) for each i).
// Portable form: rules/lowp.hpp's quantize with the block's reciprocal computed once.
inline void q8_encode_block_portable(const float* x, uint8_t* q, int64_t n, float scale) {
  const BlockRecip b = block_recip(scale);
  for (int64_t i = 0; i < n; ++i) q[i] = quantize_by(x[i], scale, b, kMap<7>, kMap<8>);
}

// The same codes, by lowp_q8_avx512.hpp or lowp_q8_avx2.hpp where the CPU has them (the last n % 8
// by the portable loop). A block whose reciprocal needs a pre-scale (|scale| outside [2^-100,
// 2^100): block_recip) takes the portable loop whole.
inline void q8_encode_block(const float* x, uint8_t* q, int64_t n, float scale) {
#if defined(OPTKERN_Q8_AVX2)
  const BlockRecip b = block_recip(scale);
  if (use_avx2() && scale != 0.0f && b.pre == 1.0f) {
    const int64_t n8 = n & ~int64_t(7);
    const float r = b.r;
    if (scale < 0.0f) {
      if (use_avx512_vbmi()) avx512::encode_vbmi<true>(x, q, n8, r);
      else if (use_avx512()) avx512::encode<true>(x, q, n8, r);
      else avx2::encode<true>(x, q, n8, r);
    } else {
      if (use_avx512_vbmi()) avx512::encode_vbmi<false>(x, q, n8, r);
      else if (use_avx512()) avx512::encode<false>(x, q, n8, r);
      else avx2::encode<false>(x, q, n8, r);
    }
    for (int64_t i = n8; i < n; ++i) q[i] = quantize_by(x[i], scale, b, kMap<7>, kMap<8>);
    return;
  }
#endif
  q8_encode_block_portable(x, q, n, scale);
}

// dyn_decode_mag<M>(c), branch-free: the leading one from the exponent of float(c) (exact), the
// division by 2^F as the (exact) product by 2^-F, 10^-e by selects; same roundings otherwise.
template <int M> inline float q8_decode_mag(uint32_t c) {
  const float fc = float(int(c));  // exact; from int: no branch
  const int top = int(bits_of(fc) >> 23) - 127;  // leading one of c (c >= 1)
  float p = 1.0f;  // 10^-e, e = M - 1 - top: the last k with c < 2^(M - k), i.e. e >= k
#pragma GCC unroll 8
  for (int k = 1; k < M; ++k) p = fc < float(1 << (M - k)) ? pow10_neg(k) : p;  // (a float compare vectorizes)
  const int f = int(c) & ((1 << (top & 31)) - 1);
  const float inv_two_f = float_of(uint32_t(127 - top) << 23);
  const float v = p * (0.1f + 0.9f * float(f + 1) * inv_two_f);
  return c == 0u ? 0.0f : v;
}

// A block of codes -> values (as lowp::dequantize(q[i], scale) for each i).
inline void q8_decode_block_portable(const uint8_t* q, float* x, int64_t n, float scale) {
  if (scale < 0.0f) {
    const float s = -scale;
    for (int64_t i = 0; i < n; ++i) {
      const float m = q8_decode_mag<7>(q[i] & 0x7fu);
      x[i] = ((q[i] & 0x80u) ? -m : m) * s;
    }
  } else {
    for (int64_t i = 0; i < n; ++i) x[i] = q8_decode_mag<8>(q[i]) * scale;
  }
}

inline void q8_decode_block(const uint8_t* q, float* x, int64_t n, float scale) {
#if defined(OPTKERN_Q8_AVX2)
  if (use_avx2()) {
    const int64_t n8 = n & ~int64_t(7);
    if (use_avx512()) {
      const int64_t n64 = use_avx512_vbmi() ? n & ~int64_t(63) : 0;  // (the rest: the arithmetic decode)
      if (scale < 0.0f) {
        avx512::decode_vbmi<true>(q, x, n64, -scale);
        avx512::decode<true>(q + n64, x + n64, n8 - n64, -scale);
      } else {
        avx512::decode_vbmi<false>(q, x, n64, scale);
        avx512::decode<false>(q + n64, x + n64, n8 - n64, scale);
      }
    } else {
      if (scale < 0.0f) avx2::decode<true>(q, x, n8, -scale);
      else avx2::decode<false>(q, x, n8, scale);
    }
    q8_decode_block_portable(q + n8, x + n8, n - n8, scale);
    return;
  }
#endif
  q8_decode_block_portable(q, x, n, scale);
}

}  // namespace lowp
}  // namespace optkern
