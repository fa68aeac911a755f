// Storage formats of a low-precision optimizer step, shared by the CPU loop
// (cpp/lowp_loop.hpp) and the CUDA kernel (cuda/lowp_step.cu): how one element
// of a param / grad / state is loaded to float32 and stored back, and the one
// element update that applies ANY rule of rules/optim.hpp in float32:
//
//   w  = master[i] (fp32 copy of a bf16/fp16 param) or p[i] (fp32 param)
//   g  = float(grad[i]) (* 1 / grad scale)  grad has the param's format
//   s  = float(state_k[i])                  fp32, bf16, or 8-bit code * block scale
//   rule(w, g, s)                           the fp32 rule, unchanged
//   master[i] = w, p[i] = round(w)          nearest even or stochastic
//   state_k[i] = s (bf16: stochastic)       8-bit: quantized by the caller per block
//
// Random words (stochastic rounding): element with global index e at step t
// takes Philox word e of stream t (philox::word(e, key, t)) with key = seed
// for the param, so the param's rounding is exactly
// optkern.lowp.stochastic_round(master, seed=seed, step=t, offset=e). A bf16
// state needs 16 random bits (f32_to_bf16_sr adds a word's high half), so
// states 2j and 2j + 1 share the word of key seed + 1 + 2j: state 2j takes its
// high half (stochastic_round's bits with that key), state 2j + 1 its low half
// -- one Philox word per element for Adam's two states, not two (Philox was
// the largest part of a bf16-state step on the CPU: bench/RESULTS.md).
#pragma once
#include <cstdint>
#include <type_traits>

#include "optkern/common.hpp"
#include "optkern/philox.hpp"
#include "optkern/rules/amp.hpp"
#include "optkern/rules/lowp.hpp"

namespace optkern {
namespace lowp {

enum class Fmt : int { f32 = 0, bf16 = 1, f16 = 2, q8 = 3 };

// The 8-bit block sizes a step takes (powers of two; the CPU loop's stage buffers hold the largest).
constexpr int64_t kSmallestBlock = 64;
constexpr int64_t kLargestBlock = 4096;

// An element of format F as stored (fp32: float; bf16 / fp16: its bits; q8: its code), and
// widened to float32 (q8 needs the block scale: dequantize). Raw loads apart from widening let
// the CUDA kernel issue a batch of loads before the first conversion waits for one.
template <Fmt F> using Raw = std::conditional_t<F == Fmt::f32, float, std::conditional_t<F == Fmt::q8, uint8_t, uint16_t>>;
template <Fmt F> OK_HD Raw<F> load_raw(const void* a, int64_t i) { return static_cast<const Raw<F>*>(a)[i]; }
template <Fmt F> OK_HD float widen(Raw<F> x) {
  if constexpr (F == Fmt::f32) return x;
  if constexpr (F == Fmt::bf16) return bf16_to_f32(x);
  if constexpr (F == Fmt::f16) return f16_to_f32(x);
  return 0.0f;
}

// Element i of an array of format F as float32 (not q8).
template <Fmt F> OK_HD float load(const void* a, int64_t i) { return widen<F>(load_raw<F>(a, i)); }

// x rounded into element i of an array of format F (not q8): nearest even, or
// stochastic with the random word `rnd` when `sr`.
template <Fmt F> OK_HD void store(void* a, int64_t i, float x, bool sr, uint32_t rnd) {
  if constexpr (F == Fmt::f32) static_cast<float*>(a)[i] = x;
  if constexpr (F == Fmt::bf16) static_cast<uint16_t*>(a)[i] = sr ? f32_to_bf16_sr(x, rnd) : f32_to_bf16(x);
  if constexpr (F == Fmt::f16) static_cast<uint16_t*>(a)[i] = sr ? f32_to_f16_sr(x, rnd) : f32_to_f16(x);
}

// One tensor of a step: pointers of its lists (master null for fp32 params,
// scales null unless states are 8-bit) and the global index of its element 0.
struct Tensor {
  void* p;
  float* master;
  const void* g;
  void* s[3];
  float* scale[3];
  int64_t n;
  uint64_t base;
};

struct Config {
  uint64_t seed, step;
  bool sr_param;  // stochastic rounding of the low-precision param
  int64_t block;  // 8-bit block size
  // GradScaler's scale (one float32 where the arrays live) or null: the grads are unscaled in
  // the step, g * rules::inv_scale(*grad_scale), after widening (a half grad unscaled in its
  // own format would lose what the scaling kept). grad_mul is that factor once read (1: none).
  const float* grad_scale = nullptr;
  float grad_mul = 1.0f;
};

// The loads of one element's update: its fp32 weight (master or fp32 param), and its grad as
// stored, unscaled by grad_of. (Apart from apply_element so that the CUDA kernel can issue a
// batch of elements' loads before any of their stores, which the compiler may not reorder
// across: the arrays may alias for all it knows.)
template <Fmt PF> OK_HD float load_weight(const Tensor& t, int64_t i) {
  return PF == Fmt::f32 ? static_cast<const float*>(t.p)[i] : t.master[i];
}
template <Fmt PF> OK_HD float grad_of(Raw<PF> g, const Config& c) { return rules::unscale(widen<PF>(g), c.grad_mul); }

// The rule on loaded values, then the param and master stored; the new state values are left
// in s[] for the caller (stored by store_states, or quantized per block).
template <Fmt PF, class Rule>
OK_HD void apply_element(const Rule& rule, const Tensor& t, int64_t i, const Config& c, float w, float g, float* s) {
  rule(w, g, s);
  if constexpr (PF == Fmt::f32) {
    static_cast<float*>(t.p)[i] = w;
  } else {
    t.master[i] = w;
    const uint32_t rnd = c.sr_param ? philox::word(t.base + uint64_t(i), c.seed, c.step) : 0u;
    store<PF>(t.p, i, w, c.sr_param, rnd);
  }
}

// The Philox key of bf16 state k's words, and state k's random bits from its pair's word (the
// mapping above; f32_to_bf16_sr reads the high half).
OK_HD uint64_t state_key(const Config& c, int k) { return c.seed + 1u + uint64_t(k & ~1); }
OK_HD uint32_t state_bits(uint32_t word, int k) { return (k & 1) ? word << 16 : word; }

// States 0..K-1 of element i back into fp32 / bf16 arrays (bf16: stochastic, one word per pair).
template <Fmt SF, int K> OK_HD void store_states(const Tensor& t, int64_t i, const float* s, const Config& c) {
  uint32_t word = 0u;
  for (int k = 0; k < K; ++k) {
    if constexpr (SF == Fmt::bf16) {
      if ((k & 1) == 0) word = philox::word(t.base + uint64_t(i), state_key(c, k), c.step);
      store<SF>(t.s[k], i, s[k], true, state_bits(word, k));
    } else {
      store<SF>(t.s[k], i, s[k], false, 0u);
    }
  }
}

// An 8-bit block's scale as a reduction that gives the same in any order (the CUDA kernel's
// warps and atomics), equal to the CPU's q8_block_scale (lowp_q8.hpp): the max over the block's
// new values of abs_bits(x) (|x|'s bits order like the values; NaN and +-inf count as 0) and
// whether any x < 0, then scale_of(max, any) = block_scale(absmax, any_negative) (rules/lowp.hpp).
// An inf in the scale decoded the whole block as 0 * inf = NaN (one second moment overflowing in
// an Adam step turned 256 params NaN where float32 Adam stops just that element); counted as 0, the
// inf encodes as its sign's top code (x / scale clamps to 1) and its neighbours keep their bound.
OK_HD uint32_t abs_bits(float x) {
  const uint32_t a = bits_of(x) & 0x7fffffffu;
  return a >= 0x7f800000u ? 0u : a;
}
// What a block's values say beside their absmax, OR-reduced with it: bit 0, x < 0 (the signed
// map); bit 1, x is +-inf (read only where the absmax is 0: see scale_of).
OK_HD uint32_t block_flags(float x) {
  return (x < 0.0f ? 1u : 0u) | ((bits_of(x) & 0x7fffffffu) == 0x7f800000u ? 2u : 0u);
}
// `flags`: block_flags OR-reduced (a bool: whether any x < 0). A block with no finite non-zero
// value but an inf takes the scale +-FLT_MAX: its infs saturate to +-FLT_MAX, as next to finite
// values they saturate to the block's bound (its zeros and NaNs stay 0); with the scale 0 they
// were stored as 0 (8-bit Adam's overflowed second moment came back 0: a step of m / eps).
OK_HD float scale_of(uint32_t max_abs_bits, uint32_t flags) {
  const uint32_t top = max_abs_bits == 0u && (flags & 2u) ? 0x7f7fffffu : max_abs_bits;
  return block_scale(float_of(top), (flags & 1u) != 0u);
}

}  // namespace lowp
}  // namespace optkern
