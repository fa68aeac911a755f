// Low-precision number formats, written once for the CPU loops and the CUDA
// kernels: float32 <-> bfloat16 / float16 conversion (round to nearest even,
// and stochastic rounding from a 32-bit random word), and the blockwise 8-bit
// "dynamic tree" quantization of optimizer states (Dettmers 2016; the map of
// bitsandbytes' 8-bit optimizers, Dettmers et al. 2022).
//
// Everything works on the bit patterns with integer arithmetic, so the result
// never depends on the FPU's rounding mode, flush-to-zero or fast-math, and
// CPU and GPU give the same bits. Half types travel as uint16_t.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "optkern/common.hpp"

namespace optkern {
namespace lowp {

OK_HD uint32_t bits_of(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#endif
}

OK_HD float float_of(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, 4);
  return x;
#endif
}

// ---- bfloat16: the top half of a float32 --------------------------------------------------------

OK_HD float bf16_to_f32(uint16_t h) { return float_of(uint32_t(h) << 16); }

// Round to nearest even: add 0x7fff plus the lowest kept bit, truncate. The
// carry walks into the exponent exactly as rounding should (up to inf).
// NaN keeps its sign and top payload and is made quiet (never becomes inf).
OK_HD uint16_t f32_to_bf16(float x) {
  const uint32_t u = bits_of(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Stochastic rounding: up with probability (dropped low 16 bits) / 2^16,
// exactly, by adding 16 random bits before truncating. A finite value that
// round-to-nearest keeps finite stays finite (saturates at the largest bf16).
OK_HD uint16_t f32_to_bf16_sr(float x, uint32_t rnd) {
  const uint32_t u = bits_of(x);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);
  if (a >= 0x7f7f8000u) return f32_to_bf16(x);  // rounds to inf (or is inf) either way
  const uint32_t r = (u + (rnd >> 16)) >> 16;
  return uint16_t((r & 0x7fffu) == 0x7f80u ? r - 1u : r);
}

// ---- float16 (IEEE binary16) --------------------------------------------------------------------

OK_HD float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1fu) return float_of(sign | 0x7f800000u | (m << 13));
  if (e != 0) return float_of(sign | ((e + 112u) << 23) | (m << 13));
  const float mag = float(m) * 5.9604644775390625e-08f;  // subnormal: m 2^-24, exact
  return sign ? -mag : mag;
}

// Below 2^-14 binary16 is subnormal with spacing 2^-24: the float32 significand
// (implicit bit included) shifted right by `shift` counts those steps.
struct F16Split {
  uint32_t q, rem, shift;
};
OK_HD F16Split f16_subnormal_split(uint32_t a) {
  const uint32_t e = a >> 23;
  const uint32_t m = (a & 0x7fffffu) | (e ? 0x800000u : 0u);
  const uint32_t shift = (e ? 126u : 125u) - e;  // >= 14 here; f32 subnormals: e = 0 acts as 1
  if (shift >= 32u) return {0u, m, shift};
  return {m >> shift, m & ((1u << shift) - 1u), shift};
}

// Round to nearest even. 65520 (halfway past the largest finite 65504) and
// above become inf; NaN stays NaN (quiet, sign kept).
OK_HD uint16_t f32_to_f16(float x) {
  const uint32_t u = bits_of(x);
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);
  if (a >= 0x38800000u) {  // normal: rebias the exponent (127 - 15 = 112), round 13 bits away
    const uint32_t r = a - 0x38000000u;
    return uint16_t(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13));
  }
  if (a <= 0x33000000u) return uint16_t(sign);  // <= 2^-25: the tie at 2^-25 goes to even 0
  const F16Split s = f16_subnormal_split(a);
  const uint32_t half = 1u << (s.shift - 1u);
  return uint16_t(sign | (s.q + ((s.rem > half || (s.rem == half && (s.q & 1u))) ? 1u : 0u)));
}

// Stochastic rounding to binary16: up with probability (distance to the value
// below) / (spacing), exactly while the spacing is at least 2^-32 of a unit of
// the dropped bits (all normal and most subnormal inputs; far below 2^-24 the
// probability is truncated to 32 bits). Finite inputs that round-to-nearest
// keeps finite saturate at 65504.
OK_HD uint16_t f32_to_f16_sr(float x, uint32_t rnd) {
  const uint32_t u = bits_of(x);
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u || a >= 0x477ff000u) return f32_to_f16(x);
  if (a >= 0x38800000u) {
    const uint32_t r = (a - 0x38000000u + (rnd >> 19)) >> 13;
    return uint16_t(sign | (r >= 0x7c00u ? 0x7bffu : r));
  }
  const F16Split s = f16_subnormal_split(a);
  // up iff rnd / 2^32 < rem / 2^shift
  const uint64_t thr = s.shift <= 32u ? uint64_t(s.rem) << (32u - s.shift)
                       : (s.shift - 32u < 64u ? uint64_t(s.rem) >> (s.shift - 32u) : 0u);
  return uint16_t(sign | (s.q + (uint64_t(rnd) < thr ? 1u : 0u)));
}

// ---- SWALP's quantizers (Yang et al. 2019): W-bit fixed point and block floating point ----------
//
// x goes to a grid of W-bit two's-complement integers times a power-of-two step,
//     Q(x) = step * clip(floor(x / step + u), -2^(W-1), 2^(W-1) - 1),
// u uniform in [0, 1) (stochastic rounding: E[Q(x)] = x inside the range) or rounding to nearest
// even. Fixed point <W, F>: step = 2^-F. Block floating point: one exponent per block, the largest
// finite |x|'s E = floor(log2 absmax), step = 2^(E - W + 2), so the absmax's index lies in
// [2^(W-2), 2^(W-1)) and nothing finite clips (beyond rounding to the grid's ends). In double, where
// x / step (a float times a power of two) and u's 24 bits add exactly for |x / step| < 2^28, so the
// expectation is exact to 2^-24 of a step. NaN stays NaN, +-inf saturates (a block with no finite
// non-zero value keeps its +-inf: block_fp_grid). The integer range stops
// at the last grid points float32 holds: with absmax >= 2^127 the bottom point -2^(W-1) step is
// -2^128, which would turn -FLT_MAX (a finite value) into -inf.
struct Grid {
  double step, inv_step, lo, hi;  // lo, hi: the integer range, in steps
};
OK_HD Grid grid_of(int log2_step, int bits) {
  constexpr double kMaxFloat = 3.4028234663852886e38;  // FLT_MAX
#if defined(__CUDA_ARCH__)
  const double step = ldexp(1.0, log2_step), top = ldexp(1.0, bits - 1);
  const double fits = floor(kMaxFloat / step);
#else
  const double step = std::ldexp(1.0, log2_step), top = std::ldexp(1.0, bits - 1);
  const double fits = std::floor(kMaxFloat / step);
#endif
  const double hi = top - 1.0 < fits ? top - 1.0 : fits;
  return {step, 1.0 / step, -top < -fits ? -fits : -top, hi};  // 1 / step: exact, a power of two
}
OK_HD Grid fixed_point_grid(int bits, int frac) { return grid_of(-frac, bits); }
// E = floor(log2 absmax) from absmax's bits (absmax finite, >= 0). A block with no finite non-zero
// value (zeros, NaN, +-inf) has no range for its infs to saturate to: the grid of 2^-126 keeps its
// zeros, unclipped so that +-inf stays +-inf (clipped, +inf became ~2.3e-38: an overflow hidden).
OK_HD Grid block_fp_grid(float absmax, int bits) {
  const uint32_t u = bits_of(absmax);
  if ((u & 0x7fffffffu) == 0u) {
    Grid g = grid_of(-126 - bits + 2, bits);
    g.hi = double(float_of(0x7f800000u));
    g.lo = -g.hi;
    return g;
  }
  int e = int(u >> 23) - 127;
  if (e == -127) {  // subnormal (or 0): the leading one of the significand
    for (uint32_t m = u & 0x7fffffu; m; m >>= 1) ++e;
    e = e == -127 ? -126 : e - 23;
  }
  return grid_of(e - bits + 2, bits);
}
OK_HD float quantize_grid(float x, const Grid& g, bool stochastic, uint32_t rnd) {
  const double y = double(x) * g.inv_step;
#if defined(__CUDA_ARCH__)
  double i = stochastic ? floor(y + double(rnd >> 8) * 5.9604644775390625e-08) : rint(y);
#else
  double i = stochastic ? std::floor(y + double(rnd >> 8) * 5.9604644775390625e-08) : std::rint(y);
#endif
  i = i < g.lo ? g.lo : (i > g.hi ? g.hi : i);  // (a NaN passes both tests)
  return float(i * g.step);
}

// ---- blockwise 8-bit dynamic quantization -------------------------------------------------------
//
// A block of values is stored as one float32 scale (the block's absmax) and
// one byte per value holding x / absmax on a logarithmic-linear map:
// magnitude code c of M bits, E = leading zeros of c, F = M - 1 - E fraction
// bits f below the leading one:
//     value(c) = 10^-E (0.1 + 0.9 (f + 1) / 2^F),   value(0) = 0.
// E = 0 spans (0.1, 1] in 2^(M-1) linear steps, each further decade half as
// many: relative precision is kept for small values, so a small second moment
// never collapses to zero next to a large one (what breaks linear int8 Adam).
// Signed blocks (first moments): sign bit + M = 7, smallest non-zero 1e-6.
// Unsigned blocks (second moments, all values >= 0): M = 8, smallest 1e-7.
// The top value is exactly 1, so each block's absmax survives exactly.
// Round trip error: at most 0.45 / 2^(M-1) of the scale (signed: scale / 142).

OK_HD float pow10_neg(int e) {  // 10^-e for e in [0, 8], the same floats everywhere
  return e == 0 ? 1.0f : e == 1 ? 0.1f : e == 2 ? 0.01f : e == 3 ? 1e-3f : e == 4 ? 1e-4f
       : e == 5 ? 1e-5f : e == 6 ? 1e-6f : e == 7 ? 1e-7f : 1e-8f;
}

// Magnitude code (M bits) -> value in [0, 1].
template <int M> OK_HD float dyn_decode_mag(uint32_t c) {
  if (c == 0) return 0.0f;
#if defined(__CUDA_ARCH__)
  const int top = 31 - __clz(int(c));  // position of the leading one (one instruction, no loop)
#else
  const int top = 31 - __builtin_clz(c);
#endif
  const int e = M - 1 - top, f_bits = top;
  const uint32_t f = c & ((1u << f_bits) - 1u);
  // / 2^F as the equal, exact product by 2^-F (a division on the GPU is a subroutine)
  return pow10_neg(e) * (0.1f + 0.9f * float(f + 1u) * float_of(uint32_t(127 - f_bits) << 23));
}

// Value in [0, 1] -> nearest magnitude code (M bits). The decade is found by
// comparisons (branch-free), the step within it by rounding; the step just
// below a decade's first level is the top of the next decade, code 2^F - 1.
template <int M> OK_HD uint32_t dyn_encode_mag(float x) {
  if (!(x > 0.0f)) return 0u;
  if (x > 1.0f) x = 1.0f;
  int e = 0;
  for (int k = 1; k < M; ++k) e += x <= pow10_neg(k) ? 1 : 0;
  if (e == M - 1) return x >= 0.5f * pow10_neg(M - 1) ? 1u : 0u;
  const int f_bits = M - 1 - e;
  const float t = (x / pow10_neg(e) - 0.1f) / 0.9f * float(1 << f_bits) - 1.0f;
  int f = int(rintf(t));
  f = f < -1 ? -1 : (f > (1 << f_bits) - 1 ? (1 << f_bits) - 1 : f);
  return uint32_t((1 << f_bits) + f);
}

// One byte <-> value / scale. Signed: bit 7 is the sign, 7 magnitude bits.
OK_HD float dyn_decode(uint8_t c, bool is_signed) {
  if (!is_signed) return dyn_decode_mag<8>(c);
  const float m = dyn_decode_mag<7>(c & 0x7fu);
  return (c & 0x80u) ? -m : m;
}
OK_HD uint8_t dyn_encode(float x, bool is_signed) {
  if (!is_signed) return uint8_t(dyn_encode_mag<8>(x));
  const uint32_t m = dyn_encode_mag<7>(x < 0.0f ? -x : x);
  return uint8_t(m == 0 ? 0u : ((x < 0.0f ? 0x80u : 0u) | m));
}

// A block's scale records its map: absmax for an unsigned block, -absmax for
// a signed one (a block whose new values are all >= 0 takes the finer
// unsigned map). A zero block stores scale 0 and codes 0 (one whose only non-zero values are
// +-inf: +-FLT_MAX, lowp_storage.hpp's scale_of).
OK_HD float block_scale(float absmax, bool any_negative) { return any_negative ? -absmax : absmax; }
// The product is rounded on its own on the device as well: the CPU loop stores the decoded
// state before the rule reads it, and nvcc could otherwise fuse this product into the rule's
// first add (a bit the 8-bit state's CPU-GPU equality tests would see).
OK_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
// `decode(c, is_signed)`: dyn_decode, or a lookup of its values (the CUDA step's shared table).
template <class Decode> OK_HD float dequantize_by(uint8_t c, float scale, const Decode& decode) {
  return scale < 0.0f ? mul_rn(decode(c, true), -scale) : mul_rn(decode(c, false), scale);
}
OK_HD float dequantize(uint8_t c, float scale) {
  return dequantize_by(c, scale, [](uint8_t x, bool is_signed) { return dyn_decode(x, is_signed); });
}
OK_HD uint8_t quantize(float x, float scale) {
  if (scale == 0.0f) return 0u;
  return scale < 0.0f ? dyn_encode(x / -scale, true) : dyn_encode(x / scale, false);
}

}  // namespace lowp
}  // namespace optkern
