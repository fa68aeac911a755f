// Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as
// easy as 1, 2, 3", SC 2011), the counter-based generator of Random123 and
// curand. A (counter, key) pair maps to four independent 32-bit words with no
// state, so every element of an array can be drawn by whichever thread (CPU
// or GPU) owns it and the numbers never depend on the parallel layout.
//
// Element mapping used by every optkern function (CPU and CUDA alike):
//   global index   g = offset + i                (i: flat C-order index)
//   key            = {lo32(seed), hi32(seed)}
//   32-bit streams (float32 uniform, Rademacher, dropout masks of any dtype):
//     word = philox(counter = {lo32(g/4), hi32(g/4), 0, 0}, key)[g % 4]
//   53-bit stream (float64 uniform): element g takes words 2(g%2), 2(g%2)+1
//     of philox(counter = g/2, key).
// With offset = 0 and a multiple-of-4 length this is the sequence curand's
// curand_init(seed, 0, 0) + curand4() produces; `offset` lets consecutive
// calls continue one stream: uniform(n, offset=k) == uniform(n + k)[k:].
#pragma once
#include <cstdint>

#include "optkern/common.hpp"

namespace optkern {
namespace philox {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key bumps

struct U4 { uint32_t x, y, z, w; };

OK_HD uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t& hi) {
  const uint64_t p = uint64_t(a) * uint64_t(b);
  hi = uint32_t(p >> 32);
  return uint32_t(p);
}

OK_HD U4 single_round(U4 c, uint32_t k0, uint32_t k1) {
  uint32_t hi0, hi1;
  const uint32_t lo0 = mulhilo(kM0, c.x, hi0);
  const uint32_t lo1 = mulhilo(kM1, c.z, hi1);
  return {hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
}

// The full 128-bit counter and 64-bit key form (as in the Random123 tests).
OK_HD U4 philox4x32_10(U4 c, uint32_t k0, uint32_t k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    c = single_round(c, k0, k1);
    k0 += kW0;
    k1 += kW1;
  }
  return c;
}

// The four words of block `counter` (a 64-bit counter, upper half zero).
OK_HD U4 block(uint64_t counter, uint64_t seed) {
  return philox4x32_10({uint32_t(counter), uint32_t(counter >> 32), 0u, 0u}, uint32_t(seed),
                       uint32_t(seed >> 32));
}

// Block `counter` of stream `stream` (the upper 64 counter bits): independent
// streams of one seed, e.g. one per optimizer step for stochastic rounding.
OK_HD U4 block(uint64_t counter, uint64_t seed, uint64_t stream) {
  return philox4x32_10({uint32_t(counter), uint32_t(counter >> 32), uint32_t(stream), uint32_t(stream >> 32)},
                       uint32_t(seed), uint32_t(seed >> 32));
}

OK_HD uint32_t lane(const U4& r, unsigned k) {
  return k == 0 ? r.x : k == 1 ? r.y : k == 2 ? r.z : r.w;
}

// The 32-bit word of element g (see the mapping above).
OK_HD uint32_t word(uint64_t g, uint64_t seed) { return lane(block(g >> 2, seed), unsigned(g & 3)); }
// The same in stream `stream` (stream 0 is the stream above).
OK_HD uint32_t word(uint64_t g, uint64_t seed, uint64_t stream) {
  return lane(block(g >> 2, seed, stream), unsigned(g & 3));
}

// Uniform in [0, 1): the top 24 bits, exact in float32 (and in float64).
// (The shifted words fit an int32: converting from signed lets a CPU loop vectorize; same values.)
OK_HD float to_float(uint32_t w) { return float(int32_t(w >> 8)) * 5.9604644775390625e-08f; }  // 2^-24

// Uniform in [0, 1) from 53 bits: 27 of `a`, 26 of `b`.
OK_HD double to_double(uint32_t a, uint32_t b) {
  return (double(int32_t(a >> 5)) * 67108864.0 + double(int32_t(b >> 6))) * 1.1102230246251565e-16;  // 2^26, 2^-53
}

// +1 or -1 with probability 1/2 each, from the top bit.
template <class T> OK_HD T to_sign(uint32_t w) { return (w >> 31) ? T(-1) : T(1); }

// Element g's uniform in the precision of T (float: 24 bits, double: 53 bits).
template <class T> OK_HD T uniform(uint64_t g, uint64_t seed);
template <> OK_HD float uniform<float>(uint64_t g, uint64_t seed) { return to_float(word(g, seed)); }
template <> OK_HD double uniform<double>(uint64_t g, uint64_t seed) {
  const U4 r = block(g >> 1, seed);
  return (g & 1) ? to_double(r.z, r.w) : to_double(r.x, r.y);
}

// Dropout keeps element g when its whole 32-bit word w is >= t = round(p 2^32), t formed once in
// double on the host (dropout_threshold), so masks agree across devices and dtypes. P(keep) is then
// 1 - t 2^-32, within 2^-33 of the 1 - p that the scale 1 / (1 - p) assumes. (The float32 uniform,
// w's top 24 bits, against float(p) put it on a 2^-24 grid: E[y] / x off by up to 2^-24 / (1 - p),
// and every p within 2^-25 of 1 kept nothing.) t = 2^32 -- p = 1, or within 2^-33 of it -- keeps
// nothing: `none`, as no uint32 t can say it.
struct DropoutThreshold {
  uint32_t t;
  bool none;
};
// p in [0, 1]: p 2^32 is exact in double, + 1/2 too (below 2^33), truncated: round half up.
OK_HD DropoutThreshold dropout_threshold(double p) {
  const double t = p * 4294967296.0 + 0.5;
  return t >= 4294967296.0 ? DropoutThreshold{0u, true} : DropoutThreshold{uint32_t(t), false};
}
OK_HD bool kept(uint32_t w, DropoutThreshold k) { return w >= k.t && !k.none; }
OK_HD bool keep(uint64_t g, uint64_t seed, DropoutThreshold k) { return kept(word(g, seed), k); }
// The scale of a kept element as torch's dropout forms it: 1 - p rounded to the compute type, then
// 1 / that rounded (float32: 1 / float(1 - p), which differs from float(1 / (1 - p)) by an ulp for
// ~a quarter of p; the division in double rounds correctly to float).
template <class C> OK_HD C dropout_scale(double p) { return C(1.0 / double(C(1.0 - p))); }

}  // namespace philox
}  // namespace optkern
