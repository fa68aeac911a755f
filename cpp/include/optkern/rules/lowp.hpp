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
// Round trip error: at most 0.45 / 2^(M-1) of the scale (signed: scale / 142), up to the encoder's
// band of ~1e-4 of a step around each midpoint (dyn_encode_mag below).

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

// The encoder: y = x / scale by one correctly rounded reciprocal per block and a product per value
// (bitsandbytes' kQuantizeBlockwise: x * (1 / absmax)), then the code of y by one FMA with
// per-decade constants: no division per value (a CPU has one divider, which the Adam rule beside
// the encode already keeps busy; bench/RESULTS.md, 55th/56th). This is the definition: the CPU's
// scalar, AVX2 and AVX-512 loops and the CUDA kernels all compute exactly these roundings
// (tests/test_hunt56b_q8_recip_rule.py checks every float in [0, 1] against the vector forms).
//   code(y) = floor(y K_e + L_e), one rounding (an FMA), e = y's decade, F = M - 1 - e:
//   K_e = RN(RN(1 / RN(10^-e)) RN(1 / 0.9) 2^F), L_e = RN(2^F - 1 - 0.1 RN(1 / 0.9) 2^F + 0.5)
// i.e. rint((y 10^e - 0.1) / 0.9 2^F - 1) + 2^F of the exact map up to a band of ~1e-4 of a step
// around each midpoint (the products' and tables' roundings, 8.5 2^F ulp: cpp/lowp_q8_avx2.hpp),
// where the neighbouring code is taken: the round trip stays within 0.45 / 2^(M-1) (1 + 2e-4) of
// the scale. The last decade (e = M - 1: code 1 or 0) takes offset 0.05 for 0.1, which puts its
// cut at 10^-(M-1) / 2. (An aggregate: the CUDA step keeps a copy in shared memory.)
template <int M> struct MapTables {
  float k[8], l[8], next[8];  // next[g] = 10^-(g+1): y <= next[g] lies in decade g + 1
};
template <int M> OK_HD constexpr MapTables<M> make_map() {
  MapTables<M> t{};
  constexpr float kPow10[8] = {1.0f, 0.1f, 0.01f, 1e-3f, 1e-4f, 1e-5f, 1e-6f, 1e-7f};  // = pow10_neg
  for (int e = 0; e < 8; ++e) {
    const float two = float(1 << (e < M ? M - 1 - e : 0));  // 2^F
    constexpr float kInv09 = 1.0f / 0.9f;                   // RN(1 / 0.9)
    const float c = kInv09 * two;                           // exact: times a power of two
    t.k[e] = (1.0f / kPow10[e]) * c;                        // (1 / RN(1e-3) rounds to 999.99994)
    // (exact in double: a 24-bit times a 24-bit float; the +0.5 turns the floor into rounding)
    t.l[e] = float(double(two) - 0.5 - double(e < M - 1 ? 0.1f : 0.05f) * double(c));
    t.next[e] = e < M - 1 ? kPow10[e + 1] : -1.0f;  // the last decade has none below
  }
  return t;
}
template <int M> inline constexpr MapTables<M> kMap = make_map<M>();  // (host code; a kernel: its own)

// The magnitude code of y = x / s in an M-bit map (y <= 0 and NaN: code 0). y is clamped to
// [2^-(4M-6), 1 - 2^-24] first: min keeps a NaN y, max then makes it the low end, as y <= 0 gets
// (the low end is below the last decade's cut: code 0; the top end and any y >= 1 -- x = absmax
// can give y = 1 - 2^-24 or 1 + 2^-23 -- give the top code 2^M - 1). The decade e = #{k >= 1 :
// y <= 10^-k} from y's binade: a binade [2^j, 2^(j+1)) meets at most two decades, the lower
// g = floor(-(j + 1) log10 2) (1233 / 2^12 ~ log10 2, exact for every binade of [0, 1]), so
// e = g + (y <= 10^-(g+1)). y K_e + L_e lies in [0.44, 2^M - 0.5]: its floor is a code.
template <int M> OK_HD uint32_t dyn_encode_mag(float y, const MapTables<M>& T) {
  constexpr float kLo = M == 8 ? 1.4901161193847656e-08f : 1.1920928955078125e-07f;  // 2^-26, 2^-23
  const float m = 0.99999994f < y ? 0.99999994f : y;
  const float xc = m > kLo ? m : kLo;
  const int binade = int(bits_of(xc) >> 23);  // j + 127
  const int g = ((126 - binade) * 1233) >> 12;
  const int e = g + (xc <= T.next[g] ? 1 : 0);
  return uint32_t(int(fma_t(xc, T.k[e], T.l[e])));  // (one rounding; > 0: truncation is the floor)
}

// One byte <-> value / scale. Signed: bit 7 is the sign, 7 magnitude bits.
OK_HD float dyn_decode(uint8_t c, bool is_signed) {
  if (!is_signed) return dyn_decode_mag<8>(c);
  const float m = dyn_decode_mag<7>(c & 0x7fu);
  return (c & 0x80u) ? -m : m;
}
// y = x / s -> byte code with the tables of both maps.
OK_HD uint8_t dyn_encode(float y, bool is_signed, const MapTables<7>& t7, const MapTables<8>& t8) {
  if (!is_signed) return uint8_t(dyn_encode_mag<8>(y, t8));
  const uint32_t m = dyn_encode_mag<7>(y < 0.0f ? -y : y, t7);
  return uint8_t(m == 0 ? 0u : ((y < 0.0f ? 0x80u : 0u) | m));
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
// A block's 1 / s as y = (x pre) r, pre a power of two that keeps s pre and r = RN(1 / (s pre))
// normal floats (1 / s overflows for s < 2^-128 and loses bits below 2^-126; and with pre = 1 a
// subnormal x cannot reach a non-zero code, so flushing subnormals changes no code there). x pre
// is exact wherever the code can be non-zero. pre = 1 for s in [2^-100, 2^100): the vector loops
// take only those blocks (the others: the scalar loop, the same rule).
struct BlockRecip {
  float pre, r;
};
OK_HD float recip_rn(float s) {  // RN(1 / s), the same float everywhere
#if defined(__CUDA_ARCH__)
  return __frcp_rn(s);
#else
  return 1.0f / s;
#endif
}
OK_HD BlockRecip block_recip(float scale) {
  const float s = scale < 0.0f ? -scale : scale;
  constexpr float kLow = 7.888609052210118e-31f, kHigh = 1.2676506002282294e+30f;  // 2^-100, 2^100
  constexpr float kUp = 18446744073709551616.0f, kDown = 5.421010862427522e-20f;   // 2^64, 2^-64
  const float pre = s < kLow ? kUp : (s >= kHigh ? kDown : 1.0f);
  return {pre, recip_rn(s * pre)};
}
// quantize(x, scale) with the block's reciprocal b = block_recip(scale) and the map tables.
OK_HD uint8_t quantize_by(float x, float scale, BlockRecip b, const MapTables<7>& t7, const MapTables<8>& t8) {
  if (scale == 0.0f) return 0u;
  return dyn_encode(mul_rn(mul_rn(x, b.pre), b.r), scale < 0.0f, t7, t8);
}
OK_HD uint8_t quantize(float x, float scale) {
#if defined(__CUDA_ARCH__)
  constexpr MapTables<7> t7 = make_map<7>();  // (a kernel that encodes many values keeps them in shared memory)
  constexpr MapTables<8> t8 = make_map<8>();
  return quantize_by(x, scale, block_recip(scale), t7, t8);
#else
  return quantize_by(x, scale, block_recip(scale), kMap<7>, kMap<8>);
#endif
}

}  // namespace lowp
}  // namespace optkern
