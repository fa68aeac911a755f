// The 8-bit-state stages of the CPU loop (lowp_loop.hpp) software-pipelined on AVX-512 CPUs: one
// loop runs the rule on block j and encodes block j - 1, 64 elements of each a pass. Why: the
// rule (Adam: a square root and two divisions a value) waits on the divider while the encoder
// (lowp_q8_avx512.hpp: permutes, compares, conversions) uses the other vector pipes; run one
// after the other, each left the other's units idle (perf, one Zen 4 thread: the rule 28 %, the
// encoder 37 % of an 8-bit Adam step). Everything else is the stage's own code in its order --
// the grads as float32 (load_grads), the states decoded (q8_decode_block), the param rounded
// (store_params), each block's scale from its new values (q8_block_scale) -- and the rule is the
// fp32 optimizer's element function, vectorized by the compiler as in rule_loop: the same bits.
// An encode takes the exact per-element quantize where the fast encoder flags one, and the
// portable encoder for a scale it cannot take, as q8_encode_block does.
#pragma once
#include "lowp_q8.hpp"
#if defined(OPTKERN_Q8_AVX512)
#define OPTKERN_Q8_FUSED 1

#include <cmath>
#include <cstdint>

#include "optkern/lowp_storage.hpp"

// (GCC 12's AVX-512 intrinsics and -Wmaybe-uninitialized: see lowp_q8_avx512.hpp)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace optkern {
namespace lowp {
namespace fused {

#define OK_AVX512_FUSED __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))

// rule_loop's body over kStep elements (the compiler's 16-lane vectors; no alias between the arrays).
constexpr int64_t kStep = 64;  // elements of each block a pass (16 and 32 were slower, 128 no faster)
template <class Rule>
OK_AVX512_FUSED inline void rule64(const Rule& rule, float* OK_RESTRICT p, const float* OK_RESTRICT g,
                                   float* OK_RESTRICT s0, float* OK_RESTRICT s1, float* OK_RESTRICT s2) {
  constexpr int K = Rule::kState;
#pragma GCC ivdep
  for (int i = 0; i < kStep; ++i) {
    float s[K];
    s[0] = s0[i];
    if constexpr (K > 1) s[1] = s1[i];
    if constexpr (K > 2) s[2] = s2[i];
    float x = p[i];
    rule(x, g[i], s);
    p[i] = x;
    s0[i] = s[0];
    if constexpr (K > 1) s1[i] = s[1];
    if constexpr (K > 2) s2[i] = s[2];
  }
}

// A block's pending encode: its new values, where its codes go, its scale, and which encoder.
struct Pending {
  const float* x;
  uint8_t* q;
  float scale, r;
  bool fast, signed_map;
};

inline Pending pending(const float* x, uint8_t* q, float scale) {
  const float s = scale < 0.0f ? -scale : scale;
  const float r = 1.0f / s;
  return {x, q, scale, r, scale != 0.0f && std::isnormal(s) && std::isnormal(r), scale < 0.0f};
}

// The fast encoder's codes of x[i, i + kStep) into q, its flags into sus (as avx512::encode).
OK_AVX512_FUSED inline unsigned encode64(const Pending& e, int64_t i, uint8_t* sus) {
  if (!e.fast) return 0u;
  return e.signed_map ? unsigned(avx512::encode<true>(e.x + i, e.q + i, kStep, e.r, sus + i / 8))
                      : unsigned(avx512::encode<false>(e.x + i, e.q + i, kStep, e.r, sus + i / 8));
}

// After the loop: the flagged elements exactly, or the whole block by the portable encoder.
inline void finish(const Pending& e, int64_t n, const uint8_t* sus, bool any) {
  if (!e.fast) return q8_encode_block_portable(e.x, e.q, n, e.scale);
  if (any)
    for (int64_t j = 0; j < n / 8; ++j)
      for (int b = 0; sus[j] >> b; ++b)
        if (sus[j] >> b & 1) e.q[8 * j + b] = q8_quantize_one(e.x[8 * j + b], e.scale);
}

// nb whole blocks of c.block (a multiple of 64, at most kLargestBlock) from element lo: each as
// lowp_loop.hpp's stage, block j's rule and block j - 1's encode in one loop. `prefetch(a)`
// prefetches the streams of the block at a (the caller's distance ahead).
template <Fmt PF, class Rule, class Prefetch>
OK_AVX512_FUSED void blocks(const Rule& rule, const Tensor& t, int64_t lo, int64_t nb, const Config& c,
                            Prefetch&& prefetch) {
  constexpr int K = Rule::kState;
  static_assert(K >= 1 && K <= 3, "8-bit states: one to three");
  const int64_t B = c.block;
  // Block j's new values of state k at sbuf + ((j & 1) K + k) B until block j + 1's pass, the
  // grads after them: packed by B, not strided by kMaxBlock (16 KiB strides put every buffer in
  // the same L1 sets, and with the streams from DRAM this loop ran slower than the stage loop).
  alignas(64) float sbuf[(2 * K + 1) * kMaxBlock];
  alignas(64) uint8_t sus[K][kMaxBlock / 8];
  float* const gbuf = sbuf + 2 * K * B;
  Pending prev[K];
  for (int64_t j = 0; j <= nb; ++j) {
    const bool cur = j < nb;
    const int64_t a = lo + j * B;
    float* w = nullptr;
    const float* g = nullptr;
    float* s[3] = {nullptr, nullptr, nullptr};
    if (cur) {
      prefetch(a);
      w = PF == Fmt::f32 ? static_cast<float*>(t.p) + a : t.master + a;
      g = load_grads<PF>(t, a, B, c, gbuf);
      for (int k = 0; k < K; ++k) {
        s[k] = sbuf + ((j & 1) * K + k) * B;
        q8_decode_block(static_cast<const uint8_t*>(t.s[k]) + a, s[k], B, t.scale[k][a / B]);
      }
    }
    unsigned any[K] = {};
    // (the first block's rule and the last one's encode run alone; folding the decode into this
    // loop was slower, the block scale no faster)
    for (int64_t i = 0; i < B; i += kStep) {
      if (cur) rule64(rule, w + i, g + i, s[0] + i, K > 1 ? s[1] + i : nullptr, K > 2 ? s[2] + i : nullptr);
      if (j > 0)
        for (int k = 0; k < K; ++k) any[k] |= encode64(prev[k], i, sus[k]);
    }
    if (j > 0)
      for (int k = 0; k < K; ++k) finish(prev[k], B, sus[k], any[k] != 0);
    if (cur) {
      store_params<PF>(t, a, B, w, c);
      for (int k = 0; k < K; ++k) {
        const float sc = q8_block_scale(s[k], B);
        t.scale[k][a / B] = sc;
        prev[k] = pending(s[k], static_cast<uint8_t*>(t.s[k]) + a, sc);
      }
    }
  }
}

#undef OK_AVX512_FUSED

}  // namespace fused
}  // namespace lowp
}  // namespace optkern

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
