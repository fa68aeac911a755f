// The 8-bit state map of rules/lowp.hpp in loop-friendly forms for the CPU loop (lowp_loop.hpp),
// bit for bit the scalar functions (tests/test_lowp_q8.py pins the loop to
// optkern.lowp.quantize_blockwise / dequantize_blockwise, which run the scalar functions):
//   decode: dyn_decode_mag<M>'s own float operations in the same order, with branches turned into
//   selects (and a division by 2^F into the equal product by 2^-F) so that a block vectorizes. A
//   product that may meet an addition is exact (by a power of two), so no compiler contraction
//   into an FMA can change a result. Checked: all 256 codes of both maps.
//   encode: products by reciprocals instead of dyn_encode_mag<M>'s three divisions, with an error
//   bound that flags the few elements whose code they could change; those are recomputed by the
//   scalar quantize (q8_encode_mag_fast). Checked against the scalar function on every code
//   boundary, a dense sweep of [0, 1] and random blocks (tests/test_lowp_q8.py).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "optkern/rules/lowp.hpp"

namespace optkern {
namespace lowp {

// The block's scale, as optkern.lowp.quantize_blockwise takes it: block_scale(absmax, any < 0)
// with absmax the largest |x| that is not NaN (+0 for none). As integers the bits of |x| order
// like the values, so a vectorizable integer max (NaN mapped to 0) gives the same absmax.
inline float q8_block_scale(const float* x, int64_t n) {
  int32_t amax = 0, neg = 0;
  for (int64_t i = 0; i < n; ++i) {  // (one reduction per loop: GCC vectorizes each alone)
    int32_t u;
    std::memcpy(&u, x + i, 4);
    const int32_t a = u & 0x7fffffff;  // |x| as bits: >= 0, ordered like the values
    const int32_t m = a > 0x7f800000 ? 0 : a;  // NaN counts as 0
    amax = amax > m ? amax : m;
  }
  for (int64_t i = 0; i < n; ++i) neg |= x[i] < 0.0f ? 1 : 0;
  return block_scale(float_of(uint32_t(amax)), neg != 0);
}

// dyn_encode_mag<M>(y) without its two divisions (y / 10^-e and / 0.9), computed from y' = x * (1 / s)
// instead of y = x / s: each division becomes a product by the divisor's reciprocal, rounded once.
// Exact where it answers: with r = RN(1 / s) normal, |y' - y| <= 3.01 u y (u = 2^-24), and
// along the chain the rounded t = (y / 10^-e - 0.1) / 0.9 * 2^F - 1 moves by at most 2^F 12 u (z:
// 6.1 u, z - 0.1: 7.1 u, / 0.9: 10 u, times 2^F, plus the final - 1's rounding 2^F u). So unless t'
// lies within 2^F 32 u of a half-integer, rint(t') = rint(t): same f, same code. Where y' and y fall
// in different decades both sit at the shared edge, where either decade's code is the same
// (2^(F+1) - 1: t near 2^F - 1 in one, near -1 in the other; the same holds at the smallest
// decade's edge, code 1), so only the smallest decade's own threshold (code 0 or 1) needs a
// second look. Elements near either cut are flagged `suspect` and recomputed exactly by the
// caller; the flag costs a rint already taken and three compares.
constexpr float kInvPow10[9] = {1.0f / 1.0f, 1.0f / 0.1f, 1.0f / 0.01f, 1.0f / 1e-3f, 1.0f / 1e-4f,
                                1.0f / 1e-5f, 1.0f / 1e-6f, 1.0f / 1e-7f, 1.0f / 1e-8f};
constexpr float kInv09 = 1.0f / 0.9f;
constexpr float kHalfTol = 32.0f * 5.9604644775390625e-08f;  // 32 u, times 2^F
template <int M> inline uint32_t q8_encode_mag_fast(float y, bool& suspect) {
  const bool pos = y > 0.0f;  // false for NaN
  const float xc = y > 1.0f ? 1.0f : y;
  int e = 0;
  float p_inv = 1.0f;  // 1 / 10^-e, rounded once
#pragma GCC unroll 8
  for (int k = 1; k < M; ++k) {
    const bool below = xc <= pow10_neg(k);
    e += below ? 1 : 0;
    p_inv = below ? kInvPow10[k] : p_inv;
  }
  const int f_bits = M - 1 - e;
  const float two_f = float_of(uint32_t(127 + f_bits) << 23);
  const float t = (xc * p_inv - 0.1f) * kInv09 * two_f - 1.0f;
  const float ft = rintf(t);
  int f = int(ft);
  const int f_max = (1 << f_bits) - 1;
  f = f < -1 ? -1 : (f > f_max ? f_max : f);
  const uint32_t mid = uint32_t((1 << f_bits) + f);
  const float thr = 0.5f * pow10_neg(M - 1);
  const uint32_t last = xc >= thr ? 1u : 0u;
  const bool near_half = std::fabs(t - ft) >= 0.5f - two_f * kHalfTol;
  const bool near_thr = std::fabs(xc - thr) <= thr * kHalfTol;
  suspect = pos && (e == M - 1 ? near_thr : near_half);
  return pos ? (e == M - 1 ? last : mid) : 0u;
}

// A block of n <= kQ8MaxBlock values -> codes with the block's scale (as lowp::quantize(x[i], scale)
// for each i): the fast encoder, then the exact scalar quantize for the few flagged elements. A
// scale whose reciprocal is not a normal float (the error bound needs one) takes the exact path.
constexpr int64_t kQ8MaxBlock = 4096;
// (out of line: the fix-up loop stays a plain scalar loop, not a masked vector one that would
// compute every element exactly)
__attribute__((noinline)) inline uint8_t q8_quantize_one(float x, float scale) { return quantize(x, scale); }
inline void q8_encode_block(const float* x, uint8_t* q, int64_t n, float scale) {
  if (scale == 0.0f) {
    std::memset(q, 0, size_t(n));
    return;
  }
  const float s = scale < 0.0f ? -scale : scale;
  const float r = 1.0f / s;
  if (!(std::isnormal(r) && std::isnormal(s))) {
    for (int64_t i = 0; i < n; ++i) q[i] = quantize(x[i], scale);
    return;
  }
  alignas(64) uint8_t suspect[kQ8MaxBlock];
  uint32_t any = 0;
  if (scale < 0.0f) {
    for (int64_t i = 0; i < n; ++i) {
      const float y = x[i] * r;
      bool sus;
      const uint32_t m = q8_encode_mag_fast<7>(std::fabs(y), sus);
      const uint32_t sign = (bits_of(y) >> 24) & 0x80u;  // y < 0 wherever m != 0
      q[i] = uint8_t(m | (m != 0u ? sign : 0u));
      suspect[i] = sus ? 1 : 0;
      any |= sus ? 1u : 0u;
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      bool sus;
      q[i] = uint8_t(q8_encode_mag_fast<8>(x[i] * r, sus));
      suspect[i] = sus ? 1 : 0;
      any |= sus ? 1u : 0u;
    }
  }
  if (any)
    for (int64_t i = 0; i < n; ++i)
      if (suspect[i]) q[i] = q8_quantize_one(x[i], scale);
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
inline void q8_decode_block(const uint8_t* q, float* x, int64_t n, float scale) {
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

}  // namespace lowp
}  // namespace optkern
