// The division-free 8-bit encoder for one value, shared by the CPU's portable loop
// (cpp/lowp_q8.hpp) and the CUDA step's quantization (cuda/lowp_step.cu); the AVX2 / AVX-512
// forms (cpp/lowp_q8_avx2.hpp, lowp_q8_avx512.hpp) run the same steps on 8 / 16 lanes with these
// tables. The exact encoder (dyn_encode_mag, rules/lowp.hpp) divides three times per value; here
//   y = x RN(1 / s),  t' = y K_e + L_e  (K_e = RN(RN(10^e) RN(1 / 0.9) 2^F), L_e: 2^F - 1 - 0.1 ...)
// and rint(t') is the exact code unless t' lies within kTol of a half-integer, where `suspect`
// says so and the caller runs the exact quantize (a few values in 10^4). The error bound, and why
// an FMA contraction of y K_e + L_e keeps it, are in cpp/lowp_q8_avx2.hpp; tools/q8_exhaustive.cpp
// checks the result against the exact map over every float in [0, 1 + 64 ulp] (OPTKERN_PORTABLE=1
// for this form).
#pragma once
#include <cstdint>

#include "optkern/common.hpp"
#include "optkern/rules/lowp.hpp"

namespace optkern {
namespace lowp {

// Per-decade constants of a magnitude map of M bits, index e in [0, 8): the index t of the
// scalar map, t + 2^F = (y / 10^-e - 0.1) / 0.9 2^F + 2^F - 1, is evaluated as y K_e + L_e, then
// rounded to the code itself. The last decade (e = M - 1: code 1 at 10^-(M-1), else 0) takes
// offset 0.05 instead of 0.1, which puts its rounding cut (code 1/2) at the map's threshold
// 10^-(M-1) / 2; its codes come out right without a separate case. (An aggregate: the CUDA
// kernel keeps a copy in shared memory, which takes no constructor.)
template <int M> struct MapTables {
  float k[8], l[8], next[8];
};
template <int M> OK_HD constexpr MapTables<M> make_map() {
  MapTables<M> t{};
  constexpr float kPow10[8] = {1.0f, 0.1f, 0.01f, 1e-3f, 1e-4f, 1e-5f, 1e-6f, 1e-7f};  // = pow10_neg
  for (int e = 0; e < 8; ++e) {
    const float two = float(1 << (e < M ? M - 1 - e : 0));  // 2^F
    const float c = (1.0f / 0.9f) * two;                   // RN(1 / 0.9) 2^F, exact
    t.k[e] = (1.0f / kPow10[e]) * c;                       // RN(RN(10^e) c)
    t.l[e] = float(double(two) - 1.0 - double(e < M - 1 ? 0.1f : 0.05f) * double(c));
    t.next[e] = e < M - 1 ? kPow10[e + 1] : -1.0f;  // 10^-(e+1); the last decade has none below
  }
  return t;
}
template <int M> inline constexpr MapTables<M> kMap = make_map<M>();

// |t' - t| bound of the division-free index (the derivation: cpp/lowp_q8_avx2.hpp): rint(t') =
// rint(t) unless t' is within 15 2^F u of a half-integer; the flag takes 32 2^7 u for every decade.
constexpr float kTol = 0.5f - 4096.0f * 5.9604644775390625e-08f;

// The magnitude code of y = x RN(1 / s) in an M-bit map (y <= 0 and NaN: code 0), and whether it
// must be recomputed exactly. y is clamped to [2^-(4M-6), 1 - 2^-24] first, min keeping a NaN and
// max then making it the low end, as y <= 0 gets (both ends keep their code, unflagged, and keep
// the decade guess in [0, M - 1]); the decade e = #{k : y <= 10^-k} from y's binade: a binade
// [2^j, 2^(j+1)) meets at most two decades, the lower g = floor(-(j + 1) log10 2) (1233 / 2^12 ~
// log10 2, exact for every binade of [0, 1]), so e = g + (y <= 10^-(g+1)).
template <int M> OK_HD uint32_t encode_mag_fast(float y, const MapTables<M>& T, bool& suspect) {
  constexpr float kLo = M == 8 ? 1.4901161193847656e-08f : 1.1920928955078125e-07f;  // 2^-26, 2^-23
  const float m = 0.99999994f < y ? 0.99999994f : y;  // (y NaN: y, as _mm_min_ps(c, y))
  const float xc = m > kLo ? m : kLo;                   // (m NaN: kLo, as _mm_max_ps(m, lo))
  const int binade = int(bits_of(xc) >> 23);          // j + 127
  const int g = ((126 - binade) * 1233) >> 12;
  const int e = g + (xc <= T.next[g] ? 1 : 0);
  const float t = xc * T.k[e] + T.l[e];
  const float ft = rintf(t);
  const float dist = t - ft;
  suspect = (dist < 0.0f ? -dist : dist) >= kTol;
  return uint32_t(int(ft));
}

// quantize(x, scale) for a block whose |scale| = s and r = RN(1 / s) are normal floats (the bound
// needs both; the caller checks once per block), with the tables of both maps.
OK_HD uint8_t quantize_fast(float x, float scale, float r, const MapTables<7>& t7, const MapTables<8>& t8) {
  bool suspect = false;
  uint8_t code;
  if (scale < 0.0f) {
    const float y = x * r;  // (r = RN(1 / -scale) > 0)
    const uint32_t m = encode_mag_fast<7>(y < 0.0f ? -y : y, t7, suspect);
    code = uint8_t(m == 0u ? 0u : ((y < 0.0f ? 0x80u : 0u) | m));
  } else {
    code = uint8_t(encode_mag_fast<8>(x * r, t8, suspect));
  }
  return suspect ? quantize(x, scale) : code;
}

// Whether a block's scale takes quantize_fast: |scale| and its rounded reciprocal normal.
OK_HD bool fast_scale(float scale, float r) {
  const float s = scale < 0.0f ? -scale : scale;
  constexpr float kMin = 1.17549435e-38f, kMax = 3.40282347e+38f;  // FLT_MIN, FLT_MAX
  return s >= kMin && s <= kMax && r >= kMin && r <= kMax;
}

}  // namespace lowp
}  // namespace optkern
