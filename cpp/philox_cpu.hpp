// The CPU driver of the Philox streams (optkern/philox.hpp): blocks of the
// counter-based generator split into fixed chunks over OpenMP threads.
#pragma once
#include <cstdint>
#include <cstring>

#include "cpu_avx2.hpp"
#include "optkern/philox.hpp"
#include "parallel.hpp"
#if defined(OPTKERN_X86_AVX2)
#include <immintrin.h>
#endif

namespace optkern {
namespace philox {

// Blocks b0 .. b0 + nb - 1 of (seed, stream), all four words each, into out[0, 4 nb).
inline void fill_blocks_portable(uint32_t* out, uint64_t b0, int64_t nb, uint64_t seed, uint64_t stream) {
  for (int64_t j = 0; j < nb; ++j) {
    const U4 r = block(b0 + uint64_t(j), seed, stream);
    out[4 * j] = r.x;
    out[4 * j + 1] = r.y;
    out[4 * j + 2] = r.z;
    out[4 * j + 3] = r.w;
  }
}

#if defined(OPTKERN_X86_AVX2)
// The same with AVX2, 16 blocks per pass (nb a multiple of 16): one 32-bit lane per block, the
// 32 x 32 -> 64-bit products of a round on the even and the odd lanes (vpmuludq), two groups of
// eight blocks interleaved (a round's chain is ~8 cycles long: one group alone waits on it), then
// each lane's four words transposed into place. (GCC does not vectorize the portable loop.)
struct Lanes8 {
  __m256i x, y, z, w;
};

__attribute__((target("avx2"))) inline Lanes8 counters8(uint64_t c, uint64_t stream) {
  const __m256i x = _mm256_add_epi32(_mm256_set1_epi32(int(uint32_t(c))), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  // + 1 on the high word where the low one wrapped (c_lo > x as unsigned: signed after a bias)
  const __m256i bias = _mm256_set1_epi32(int(0x80000000u));
  const __m256i c_lo = _mm256_set1_epi32(int(uint32_t(c) ^ 0x80000000u));
  const __m256i wrapped = _mm256_cmpgt_epi32(c_lo, _mm256_xor_si256(x, bias));
  return {x, _mm256_sub_epi32(_mm256_set1_epi32(int(uint32_t(c >> 32))), wrapped),
          _mm256_set1_epi32(int(uint32_t(stream))), _mm256_set1_epi32(int(uint32_t(stream >> 32)))};
}

__attribute__((target("avx2"))) inline void round8(Lanes8& v, __m256i k0, __m256i k1) {  // single_round
  const __m256i m0 = _mm256_set1_epi64x(kM0), m1 = _mm256_set1_epi64x(kM1);
  const __m256i p0e = _mm256_mul_epu32(v.x, m0), p0o = _mm256_mul_epu32(_mm256_srli_epi64(v.x, 32), m0);
  const __m256i p1e = _mm256_mul_epu32(v.z, m1), p1o = _mm256_mul_epu32(_mm256_srli_epi64(v.z, 32), m1);
  const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(p0e, 32), p0o, 0xAA);
  const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(p1e, 32), p1o, 0xAA);
  const __m256i nx = _mm256_xor_si256(_mm256_xor_si256(hi1, v.y), k0);
  const __m256i nz = _mm256_xor_si256(_mm256_xor_si256(hi0, v.w), k1);
  v.y = _mm256_blend_epi32(p1e, _mm256_slli_epi64(p1o, 32), 0xAA);
  v.w = _mm256_blend_epi32(p0e, _mm256_slli_epi64(p0o, 32), 0xAA);
  v.x = nx;
  v.z = nz;
}

__attribute__((target("avx2"))) inline void store8(uint32_t* out, const Lanes8& v) {  // lane l -> out[4 l .. 4 l + 3]
  const __m256i xy0 = _mm256_unpacklo_epi32(v.x, v.y), xy1 = _mm256_unpackhi_epi32(v.x, v.y);
  const __m256i zw0 = _mm256_unpacklo_epi32(v.z, v.w), zw1 = _mm256_unpackhi_epi32(v.z, v.w);
  const __m256i b0 = _mm256_unpacklo_epi64(xy0, zw0), b1 = _mm256_unpackhi_epi64(xy0, zw0);  // lanes 0, 1 | 4, 5
  const __m256i b2 = _mm256_unpacklo_epi64(xy1, zw1), b3 = _mm256_unpackhi_epi64(xy1, zw1);  // lanes 2, 3 | 6, 7
  __m256i* o = reinterpret_cast<__m256i*>(out);
  _mm256_storeu_si256(o, _mm256_permute2x128_si256(b0, b1, 0x20));
  _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(b2, b3, 0x20));
  _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(b0, b1, 0x31));
  _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(b2, b3, 0x31));
}

__attribute__((target("avx2"))) inline void fill_blocks_avx2(uint32_t* out, uint64_t b0, int64_t nb, uint64_t seed,
                                                              uint64_t stream) {
  for (int64_t j = 0; j < nb; j += 16) {
    Lanes8 a = counters8(b0 + uint64_t(j), stream), b = counters8(b0 + uint64_t(j) + 8, stream);
    uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      const __m256i kv0 = _mm256_set1_epi32(int(k0)), kv1 = _mm256_set1_epi32(int(k1));
      round8(a, kv0, kv1);
      round8(b, kv0, kv1);
      k0 += kW0;
      k1 += kW1;
    }
    store8(out + 4 * j, a);
    store8(out + 4 * j + 32, b);
  }
}

// The same with AVX-512, 32 blocks per pass (nb a multiple of 32), one block per 64-bit lane:
// vpmuludq multiplies the low halves of 64-bit lanes, so a word kept in a lane's low half is
// multiplied as it stands and its 64-bit product holds both results (lo in the low half, hi after
// one shift). A lane's high half is never read by a multiply or stored, so it may hold garbage
// (y and w keep the product's high half there). Per round and 8 blocks: 2 multiplies, 2 shifts,
// 2 three-way XORs -- the 32-bit-lane form (16 blocks a vector) needed 16 operations per 16 blocks
// for the same 4 multiplies, the rest shifts and blends to split and merge even and odd lanes.
// Four groups of 8 blocks interleaved hide a round's ~5-cycle chain. GCC 12's AVX-512 intrinsics
// trip -Wmaybe-uninitialized and -Wuninitialized on their own "undefined" operands (GCC bug 105593;
// see lowp_q8_avx512.hpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#define OK_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
struct Lanes8x64 {
  __m512i x, y, z, w;  // word of lane l in the low half of 64-bit lane l
};

OK_AVX512 inline Lanes8x64 counters8x64(uint64_t c, __m512i z, __m512i w) {
  // the counters c + l as 64-bit sums (mod 2^64, as block()'s uint64_t): low word as it stands, high one shifted down
  const __m512i b = _mm512_add_epi64(_mm512_set1_epi64(int64_t(c)), _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
  return {b, _mm512_srli_epi64(b, 32), z, w};
}

OK_AVX512 inline void round8x64(Lanes8x64& v, __m512i k0, __m512i k1) {  // single_round
  const __m512i p0 = _mm512_mul_epu32(v.x, _mm512_set1_epi64(kM0));  // lo0 | hi0 << 32
  const __m512i p1 = _mm512_mul_epu32(v.z, _mm512_set1_epi64(kM1));
  v.x = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), v.y, k0, 0x96);  // hi1 ^ y ^ k0
  v.z = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), v.w, k1, 0x96);  // hi0 ^ w ^ k1
  v.y = p1;
  v.w = p0;
}

OK_AVX512 inline void store8x64(uint32_t* out, const Lanes8x64& v) {  // lane l -> out[4 l .. 4 l + 3]
  // x_l y_l pairs (dwords 2 l of x, then of y), then pairs of pairs (qwords)
  const __m512i pick = _mm512_setr_epi32(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
  const __m512i xy = _mm512_permutex2var_epi32(v.x, pick, v.y), zw = _mm512_permutex2var_epi32(v.z, pick, v.w);
  _mm512_storeu_si512(out, _mm512_permutex2var_epi64(xy, _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), zw));
  _mm512_storeu_si512(out + 16, _mm512_permutex2var_epi64(xy, _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15), zw));
}

OK_AVX512 inline void fill_blocks_avx512(uint32_t* out, uint64_t b0, int64_t nb, uint64_t seed, uint64_t stream) {
  const __m512i z = _mm512_set1_epi64(int64_t(uint32_t(stream))), w = _mm512_set1_epi64(int64_t(stream >> 32));
  for (int64_t j = 0; j < nb; j += 32) {
    const uint64_t c = b0 + uint64_t(j);
    Lanes8x64 a = counters8x64(c, z, w), b = counters8x64(c + 8, z, w);
    Lanes8x64 d = counters8x64(c + 16, z, w), e = counters8x64(c + 24, z, w);
    uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      const __m512i kv0 = _mm512_set1_epi64(k0), kv1 = _mm512_set1_epi64(k1);
      round8x64(a, kv0, kv1);
      round8x64(b, kv0, kv1);
      round8x64(d, kv0, kv1);
      round8x64(e, kv0, kv1);
      k0 += kW0;
      k1 += kW1;
    }
    store8x64(out + 4 * j, a);
    store8x64(out + 4 * j + 32, b);
    store8x64(out + 4 * j + 64, d);
    store8x64(out + 4 * j + 96, e);
  }
}
#undef OK_AVX512
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

// out[j] = word 4 b0 + skip + j of (seed, stream) for j in [0, n), skip < 4, n <= kFillMax: each
// Philox block computed once (a block per word costs ~10 ns a word; ~1 with AVX2 here).
constexpr int64_t kFillMax = 4096;
inline void fill_words_at(uint32_t* out, uint64_t b0, int64_t skip, int64_t n, uint64_t seed, uint64_t stream) {
  // nb <= 1025 blocks, rounded up to whole groups of 32 (AVX-512) or 16 (AVX2) blocks of 4 words
  alignas(64) uint32_t buf[kFillMax + 128];
  const int64_t nb = (skip + n + 3) >> 2;
#if defined(OPTKERN_X86_AVX2)
  if (use_avx512() && skip == 0 && n % 128 == 0) return fill_blocks_avx512(out, b0, nb, seed, stream);  // (whole passes: no copy)
  if (use_avx512()) fill_blocks_avx512(buf, b0, (nb + 31) & ~int64_t(31), seed, stream);
  else if (use_avx2()) fill_blocks_avx2(buf, b0, (nb + 15) & ~int64_t(15), seed, stream);
  else fill_blocks_portable(buf, b0, nb, seed, stream);
#else
  fill_blocks_portable(buf, b0, nb, seed, stream);
#endif
  std::memcpy(out, buf + skip, size_t(n) * 4);
}

// out[i] = word(g0 + i, seed, stream) for i in [0, n), n <= kFillMax.
inline void fill_words(uint32_t* out, uint64_t g0, int64_t n, uint64_t seed, uint64_t stream) {
  fill_words_at(out, g0 >> 2, int64_t(g0 & 3), n, seed, stream);
}

// f(a, w, m) for consecutive batches [a, a + m) of [lo, hi), w[per j + q] (q < per) the words of
// element a + j in the element mapping of philox.hpp: per = 1, the 32-bit streams (element g takes
// word g); per = 2, the 53-bit stream (element g takes words 2 (g % 2), 2 (g % 2) + 1 of block g / 2).
// The caller's per-element loop over a batch is a plain loop that vectorizes.
template <class F>
void words_in_batches(int64_t lo, int64_t hi, uint64_t offset, uint64_t seed, uint64_t stream, unsigned per, F&& f) {
  alignas(64) uint32_t w[kFillMax];
  const int64_t batch = kFillMax / per;
  const unsigned per_block = 4 / per;  // elements per block
  for (int64_t a = lo; a < hi; a += batch) {
    const int64_t m = hi - a < batch ? hi - a : batch;
    const uint64_t g = offset + uint64_t(a);  // (offset + n <= 2^64: check_philox_counter, in every caller)
    fill_words_at(w, g / per_block, int64_t(g % per_block) * per, m * int64_t(per), seed, stream);
    f(a, static_cast<const uint32_t*>(w), m);
  }
}

// The same over [0, n) in fixed chunks under one parallel region: the numbers are the element's,
// whatever the thread count.
template <class F> void parallel_words(int64_t n, uint64_t offset, uint64_t seed, uint64_t stream, unsigned per, F&& f) {
  if (n <= 0) return;
  const auto chunks = make_chunks({n});
  for_each_chunk(chunks, n * 8, [&](const Chunk& c) {
    words_in_batches(c.start, c.start + c.len, offset, seed, stream, per, f);
  });
}

}  // namespace philox
}  // namespace optkern
