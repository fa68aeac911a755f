// Exhaustive check of the CPU 8-bit encoder/decoder (cpp/lowp_q8.hpp, and its AVX-512 and AVX2
// forms cpp/lowp_q8_avx512.hpp, lowp_q8_avx2.hpp where the CPU has them) against the scalar map of
// rules/lowp.hpp: every float in [0, 1 + 64 ulp] under scale 1 for both maps (3.2e9 encodes),
// every 7th float under 12 random scales, all 256 codes decoded under 200 scales, and the block
// scale of 200000 random blocks with NaN, inf, -0 and subnormals. ~70 s on one core:
//
//   g++ -O3 -std=c++17 -Icpp -Icpp/include tools/q8_exhaustive.cpp -o /tmp/q8x
//   /tmp/q8x && /tmp/q8x decode && /tmp/q8x scale
//
// (OPTKERN_NO_AVX512=1 checks the AVX2 forms, OPTKERN_PORTABLE=1 the portable loops.) Run it after
// any change to the map or its vectorized forms; the test suite checks boundaries and samples,
// this checks everything.
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>
#include "lowp_q8.hpp"
using namespace optkern::lowp;
// all float bit patterns u in [lo, hi) with stride, encoded in blocks of 4096 under `scale`
static long check(float scale, uint32_t lo, uint32_t hi, uint32_t stride, bool neg) {
  std::vector<float> x(4096);
  std::vector<uint8_t> q(4096);
  long bad = 0, n = 0;
  uint32_t u = lo;
  while (u < hi) {
    int m = 0;
    for (; m < 4096 && u < hi; ++m, u += stride) {
      float v; uint32_t w = u | (neg ? 0x80000000u : 0u); std::memcpy(&v, &w, 4);
      x[m] = v * (scale < 0 ? -scale : scale);
    }
    q8_encode_block(x.data(), q.data(), m, scale);
    for (int i = 0; i < m; ++i) {
      ++n;
      if (q[i] != quantize(x[i], scale)) { if (bad++ < 5) printf("  mismatch x=%a scale=%a got %d want %d\n", x[i], scale, q[i], quantize(x[i], scale)); }
    }
    if (u < lo) break;  // wrapped
  }
  printf("scale %a neg %d: %ld values, %ld mismatches\n", scale, neg, n, bad);
  return bad;
}
int decode_main();
int scale_main();
int main(int argc, char** argv) {
  if (argc > 1) return std::strcmp(argv[1], "scale") == 0 ? scale_main() : decode_main();
  long bad = 0;
  const uint32_t one = 0x3f800000u;
  // exhaustive in [0, 1] under scale 1, both maps
  bad += check(1.0f, 0, one + 64, 1, false);
  bad += check(-1.0f, 0, one + 64, 1, false);
  bad += check(-1.0f, 0, one + 64, 1, true);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> ud(-30, 30);
  for (int k = 0; k < 6; ++k) {
    float s = std::exp2(ud(rng)) * (1 + ud(rng) / 64);
    bad += check(s, 0, one + 64, 7, false);
    bad += check(-s, 0, one + 64, 7, k & 1);
  }
  printf("total mismatches %ld\n", bad);
  return bad != 0;
}
// decode: every code of both maps under random scales
int decode_main() {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> ud(-30, 30);
  long bad = 0;
  std::vector<uint8_t> q(4096);
  std::vector<float> x(4096);
  for (int i = 0; i < 4096; ++i) q[i] = uint8_t(i);
  for (int k = 0; k < 200; ++k) {
    float s = std::exp2(ud(rng)) * (1 + ud(rng) / 64);
    if (k & 1) s = -s;
    if (k == 0) s = 1.0f;
    if (k == 1) s = -1.0f;
    q8_decode_block(q.data(), x.data(), 4096, s);
    for (int i = 0; i < 4096; ++i) {
      const float want = dequantize(q[i], s);
      if (std::memcmp(&want, &x[i], 4)) { if (bad++ < 5) printf("decode mismatch c=%d s=%a got %a want %a\n", q[i], s, x[i], want); }
    }
  }
  printf("decode mismatches %ld\n", bad);
  return bad != 0;
}
// block scale: q8_block_scale (the vector forms) against scale_of over the scalar abs_bits
int scale_main() {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  const float specials[] = {NAN, -NAN, -0.0f, 0.0f, INFINITY, -INFINITY, -1e-42f, 1e-42f, -1e-45f};
  long bad = 0;
  std::vector<float> x;
  for (int t = 0; t < 200000; ++t) {
    const int n = 8 * (1 + int(rng() % 64));  // the vector forms take multiples of 8
    x.resize(size_t(n));
    for (auto& v : x) v = t % 4 == 0 ? std::fabs(nd(rng)) : nd(rng) * std::exp2(float(int(rng() % 60) - 30));
    for (int k = int(rng() % 4); k > 0; --k) x[rng() % n] = specials[rng() % 9];
    if (t % 7 == 0)
      for (auto& v : x) v = t % 2 ? -0.0f : 0.0f;
    uint32_t amax = 0;
    bool neg = false;
    for (float v : x) {
      amax = std::max(amax, abs_bits(v));
      neg = neg || v < 0.0f;
    }
    const float want = scale_of(amax, neg), got = q8_block_scale(x.data(), n);
    if (std::memcmp(&want, &got, 4)) { if (bad++ < 5) printf("scale mismatch n=%d got %a want %a\n", n, got, want); }
  }
  printf("block scale mismatches %ld\n", bad);
  return bad != 0;
}
