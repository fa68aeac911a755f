// An 8-bit block's decode, update and new absmax in one loop body (AVX-512 with VBMI), for the
// rules whose element loop is bound by the divider (Adam: sqrt and one or two divisions an
// element). bench/RESULTS.md (51st session, h288): the divider overlaps independent permutes and
// FMAs in one loop body but not across separate loops, so the decode's byte permutes and the
// absmax are interleaved here with the rule, 64 elements a pass; the encode needs the block's
// final absmax and stays a second pass (lowp_loop.hpp).
//
// One definition of everything: the rule is the fp32 optimizer's own element function (rule_at,
// element_loops.hpp, vectorized here as in rule_loop: the build contracts nothing, -ffp-contract=
// off, and the rules round explicitly, so the master and states come out bit for bit as a float32
// step computes them), the decode is decode_vbmi's body (decode64) and the scale block_scale's
// accumulators (ScaleAcc), all in lowp_q8_avx512.hpp.
#pragma once
#include <cstdint>
#include <type_traits>

#include "element_loops.hpp"
#include "lowp_q8.hpp"
#include "optkern/rules/optim.hpp"

namespace optkern {
namespace lowp {

// The rules that take the fused block (Adam's forms; the others keep decode, rule_loop, encode).
template <class Rule> struct FusedQ8 : std::false_type {};
template <bool A, bool U> struct FusedQ8<rules::Adam<float, A, U>> : std::true_type {};

#if defined(OPTKERN_Q8_AVX512)
// Whether this CPU runs it (n: the block's size, a multiple of 64: a tensor's last block may not be).
inline bool fused_q8(int64_t n) { return use_avx512_vbmi() && n % 64 == 0; }

namespace avx512 {

// (prefer-vector-width: GCC's generic tuning vectorizes the rule in 256-bit halves otherwise)
#define OK_Q8_FUSED \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi,fma,prefer-vector-width=512")))

// 64 codes of one state -> s[0, 64) (the map by the scale's sign, as q8_decode_block).
OK_Q8_FUSED inline void decode_state(const BytePlanes& bp, const uint8_t* q, float scale, float* s) {
  __m512 v[4];
  if (scale < 0.0f) decode64<true>(q, bp.b[1], _mm512_set1_ps(-scale), v);
  else decode64<false>(q, bp.b[0], _mm512_set1_ps(scale), v);
  for (int u = 0; u < 4; ++u) _mm512_storeu_ps(s + 16 * u, v[u]);
}

// The block [0, n) (n a multiple of 64): the rule's K states decoded from q[k] with scale[k] into
// s[k], updated with w and g in place, and new_scale[k] the scale of their new values
// (q8_block_scale's: the same accumulators and the same fix-up), for the encode.
template <class Rule>
OK_Q8_FUSED void update_block(const Rule rule, float* OK_RESTRICT w, const float* OK_RESTRICT g,
                              const uint8_t* const* q, const float* scale, float* const* s, int64_t n,
                              float* new_scale) {
  constexpr int K = Rule::kState;
  float* OK_RESTRICT const s0 = s[0];
  float* OK_RESTRICT const s1 = K > 1 ? s[1] : nullptr;
  float* OK_RESTRICT const s2 = K > 2 ? s[2] : nullptr;
  ScaleAcc acc[K][2];
  for (int k = 0; k < K; ++k) acc[k][0] = acc[k][1] = scale_acc();
  const BytePlanes& bp = byte_planes();
  for (int64_t i = 0; i < n; i += 64) {
    for (int k = 0; k < K; ++k) decode_state(bp, q[k] + i, scale[k], s[k] + i);
    OK_INDEPENDENT
    for (int64_t j = i; j < i + 64; ++j) rule_at<float, Rule>(rule, w, g, s0, s1, s2, j);
    for (int k = 0; k < K; ++k)
      for (int u = 0; u < 4; ++u) scale_add(acc[k][u & 1], _mm512_loadu_ps(s[k] + i + 16 * u));
  }
  for (int k = 0; k < K; ++k) new_scale[k] = q8_scale_infs(scale_of_acc(acc[k][0], acc[k][1], s[k], n), s[k], n);
}

#undef OK_Q8_FUSED

}  // namespace avx512
#else
inline bool fused_q8(int64_t) { return false; }
#endif

}  // namespace lowp
}  // namespace optkern
