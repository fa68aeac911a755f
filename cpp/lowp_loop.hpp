// The CPU low-precision multi-tensor loop: any rule of rules/optim.hpp applied
// in float32 to params/grads/states stored as fp32, bf16, fp16 or 8-bit
// blocks (element formats in optkern/lowp_storage.hpp). One OpenMP region over
// fixed chunks; a chunk (2^16 elements) is a whole number of 8-bit blocks, and
// each block is dequantized, updated and requantized by the thread that owns
// it, so its new absmax is taken over the new values in the same pass (the
// block's float32 values stay in L1/L2 between decode, update and encode).
#pragma once
#include <type_traits>
#include <vector>

#include "lowp_bf16_avx512.hpp"
#include "lowp_q8.hpp"
#include "lowp_q8_fused.hpp"
#include "optkern/lowp_storage.hpp"
#include "optkern/rules/optim.hpp"
#include "multi_tensor.hpp"
#include "parallel.hpp"
#include "philox_cpu.hpp"

namespace optkern {
namespace lowp {

constexpr int64_t kMaxBlock = kLargestBlock;  // a stage: one 8-bit block, or kStage values
// Elements staged as float32 per pass when states are not 8-bit. A stage's working set (grads
// and states decoded, the words of bf16 states, the master and the stored halves) must stay in L1:
// at 1024 it was ~30 KiB with bf16 states, and that step ran 1.3x slower than at 256 (one thread,
// CPU time; fp32 states were no faster or slower).
constexpr int64_t kStage = 256;
static_assert(kStage <= kMaxBlock && kMaxBlock <= philox::kFillMax, "a stage fits its buffers and one fill_words");

// The format conversions of a stage, compiled per storage format and ISA level
// but not per rule: a rule changes only the element loop between them (and
// cloning every rule x format pair tripled the build's longest compile).
//
// The grads as float32: the array itself, or decoded (and unscaled: Config::grad_scale) into gbuf.
template <Fmt PF>
OK_CLONES const float* load_grads(const Tensor& t, int64_t lo, int64_t n, const Config& c, float* gbuf) {
  if (PF == Fmt::f32 && !c.grad_scale) return static_cast<const float*>(t.g) + lo;
  if (c.grad_scale) {
    const float mul = c.grad_mul;
    for (int64_t i = 0; i < n; ++i) gbuf[i] = rules::unscale(load<PF>(t.g, lo + i), mul);
  } else {
    for (int64_t i = 0; i < n; ++i) gbuf[i] = load<PF>(t.g, lo + i);
  }
  return gbuf;
}

// States 0..K-1 as float32 in s[]: the arrays themselves, or decoded into sbuf.
template <Fmt SF>
OK_CLONES void load_states(const Tensor& t, int K, int64_t lo, int64_t n, const Config& c, float* sbuf, float** s) {
  for (int k = 0; k < K; ++k) {
    if constexpr (SF == Fmt::f32) {
      s[k] = static_cast<float*>(t.s[k]) + lo;
    } else {
      // (packed by the stage size: 16 KiB strides put every buffer in the same L1 sets)
      s[k] = sbuf + k * (SF == Fmt::q8 ? c.block : kStage);
      if constexpr (SF == Fmt::q8)
        q8_decode_block(static_cast<const uint8_t*>(t.s[k]) + lo, s[k], n, t.scale[k][lo / c.block]);
      else
        for (int64_t i = 0; i < n; ++i) s[k][i] = load<SF>(t.s[k], lo + i);
    }
  }
}

// The updated fp32 weights w rounded into a low-precision param (nearest even or stochastic).
// (Random words: philox::fill_words, the words lowp_storage.hpp's keys give, a block at a time.)
template <Fmt PF>
OK_CLONES void store_params(const Tensor& t, int64_t lo, int64_t n, const float* w, const Config& c) {
  if constexpr (PF != Fmt::f32) {
#if defined(OPTKERN_BF16_AVX512)
    constexpr bool kBf16 = PF == Fmt::bf16;  // (lowp_bf16_avx512.hpp: the same bits)
    uint16_t* const out = static_cast<uint16_t*>(t.p) + lo;
#else
    constexpr bool kBf16 = false;
#endif
    if (c.sr_param) {
      alignas(64) uint32_t rnd[kMaxBlock];
      philox::fill_words(rnd, t.base + uint64_t(lo), n, c.seed, c.step);
#if defined(OPTKERN_BF16_AVX512)
      if (kBf16 && use_avx512()) return avx512::store_bf16_sr<true>(out, w, rnd, n);
#endif
      for (int64_t i = 0; i < n; ++i) store<PF>(t.p, lo + i, w[i], true, rnd[i]);
    } else {
#if defined(OPTKERN_BF16_AVX512)
      if (kBf16 && use_avx512_bf16()) return avx512::store_bf16_rne_cvt(out, w, n);
      if (kBf16 && use_avx512()) return avx512::store_bf16_rne(out, w, n);
#endif
      for (int64_t i = 0; i < n; ++i) store<PF>(t.p, lo + i, w[i], false, 0u);
    }
  }
}

// 8-bit state k's new values x on the block [lo, lo + n), encoded with their block's scale sc.
inline void store_q8_state(const Tensor& t, int k, int64_t lo, int64_t n, const Config& c, const float* x, float sc) {
  t.scale[k][lo / c.block] = sc;
  q8_encode_block(x, static_cast<uint8_t*>(t.s[k]) + lo, n, sc);
}

// The updated states back into their storage: bf16 rounded stochastically (lowp_storage.hpp's
// words: one fill per pair of states), 8-bit requantized with the absmax of their new values
// (the stage is one block).
template <Fmt SF>
OK_CLONES void store_stage_states(const Tensor& t, int K, int64_t lo, int64_t n, const Config& c, float* const* s) {
  alignas(64) uint32_t rnd[SF == Fmt::bf16 ? kMaxBlock : 1];
  for (int k = 0; k < K; ++k) {
    if constexpr (SF == Fmt::bf16) {
      if ((k & 1) == 0) philox::fill_words(rnd, t.base + uint64_t(lo), n, state_key(c, k), c.step);
#if defined(OPTKERN_BF16_AVX512)
      if (use_avx512()) {  // (state_bits: the word's high half for state 2j, its low half for 2j + 1)
        uint16_t* const out = static_cast<uint16_t*>(t.s[k]) + lo;
        if (k & 1) avx512::store_bf16_sr<false>(out, s[k], rnd, n);
        else avx512::store_bf16_sr<true>(out, s[k], rnd, n);
        continue;
      }
#endif
      for (int64_t i = 0; i < n; ++i) store<SF>(t.s[k], lo + i, s[k][i], true, state_bits(rnd[i], k));
    } else if constexpr (SF == Fmt::q8) {
      store_q8_state(t, k, lo, n, c, s[k], q8_block_scale(s[k], n));
    }
  }
}

#if defined(OPTKERN_Q8_AVX512)
// stage() for a divider-bound rule on one whole 8-bit block (lowp_q8_fused.hpp): decode, update
// and the new absmax in one loop body, then the param and the encode as stage() stores them.
template <Fmt PF, class Rule>
void fused_stage(const Rule& rule, const Tensor& t, int64_t lo, int64_t n, const Config& c, float* w, const float* g,
                 float* sbuf) {
  constexpr int K = Rule::kState;
  const uint8_t* q[K];
  float scale[K], new_scale[K];
  float* s[K];
  for (int k = 0; k < K; ++k) {
    q[k] = static_cast<const uint8_t*>(t.s[k]) + lo;
    scale[k] = t.scale[k][lo / c.block];
    s[k] = sbuf + k * c.block;  // (as load_states packs them)
  }
  avx512::update_block(rule, w, g, q, scale, s, n, new_scale);
  store_params<PF>(t, lo, n, w, c);
  for (int k = 0; k < K; ++k) store_q8_state(t, k, lo, n, c, s[k], new_scale[k]);
}
#endif

// One stage [lo, hi) of a tensor: whatever is not float32 (grad, states) is
// decoded into L1-resident float32 buffers, then the fp32 optimizer's own
// element loop (rule_loop, multi_tensor.hpp) updates the fp32 weights in place
// -- the same compiled code as a float32 step, so the master weights and the
// states come out bit for bit as the fp32 optimizer computes them -- and the
// results are encoded back. Adam on a whole 8-bit block (AVX512_VBMI) takes fused_stage: the
// same element function, in one loop body with the decode and the new absmax.
template <Fmt PF, Fmt SF, class Rule>
void stage(const Rule& rule, const Tensor& t, int64_t lo, int64_t hi, const Config& c, float* gbuf, float* sbuf) {
  constexpr int K = Rule::kState;
  const int64_t n = hi - lo;
  float* w = PF == Fmt::f32 ? static_cast<float*>(t.p) + lo : t.master + lo;
  const float* g = load_grads<PF>(t, lo, n, c, gbuf);
#if defined(OPTKERN_Q8_AVX512)
  if constexpr (SF == Fmt::q8 && FusedQ8<Rule>::value)
    if (fused_q8(n)) return fused_stage<PF>(rule, t, lo, n, c, w, g, sbuf);
#endif
  float* s[3] = {nullptr, nullptr, nullptr};
  load_states<SF>(t, K, lo, n, c, sbuf, s);
  rule_loop<float, Rule>(rule, w, g, s[0], s[1], s[2], n);
  store_params<PF>(t, lo, n, w, c);
  store_stage_states<SF>(t, K, lo, n, c, s);
}

constexpr int64_t item_size(Fmt f) { return f == Fmt::f32 ? 4 : f == Fmt::q8 ? 1 : 2; }

// Software prefetch of elements [lo, hi) of every stream of a stage. The 8-bit path is compute
// bound, and its many short streams (param, grad, master, codes of each state) reached DRAM at
// a third of the in-cache speed without it: the hardware prefetchers did not run far enough ahead.
template <Fmt PF, Fmt SF>
inline void prefetch_stage(const Tensor& t, int K, int64_t lo, int64_t hi) {
  const auto range = [&](const void* base, int64_t size) {
    const char* b = static_cast<const char*>(base);
    for (int64_t i = lo * size; i < hi * size; i += 64) __builtin_prefetch(b + i);
  };
  range(t.p, item_size(PF));
  range(t.g, item_size(PF));
  if constexpr (PF != Fmt::f32) range(t.master, 4);
  for (int k = 0; k < K; ++k) range(t.s[k], item_size(SF));
}

template <Fmt PF, Fmt SF, class Rule>
void chunk(const Rule& rule, const Tensor& t, int64_t lo, int64_t hi, const Config& c) {
  alignas(64) float gbuf[kMaxBlock];
  alignas(64) float sbuf[3 * kMaxBlock];
  const int64_t step = SF == Fmt::q8 ? c.block : kStage;
  // 8-bit states: prefetch about kAhead elements ahead of the stage being updated
  constexpr int64_t kAhead = 2048;
  const int64_t ahead = SF == Fmt::q8 ? (kAhead + step - 1) / step * step : 0;
  if (ahead) prefetch_stage<PF, SF>(t, Rule::kState, lo, lo + ahead < hi ? lo + ahead : hi);
  for (int64_t a = lo; a < hi; a += step) {
    if (ahead && a + ahead < hi)
      prefetch_stage<PF, SF>(t, Rule::kState, a + ahead, a + ahead + step < hi ? a + ahead + step : hi);
    stage<PF, SF, Rule>(rule, t, a, a + step < hi ? a + step : hi, c, gbuf, sbuf);
  }
}

// Whether Rule is Adam's plain form (rules/optim.hpp: it has the UnitBc2 form; AdamGiven,
// derived from it, keeps its own).
template <class Rule> struct PlainAdam : std::false_type {};
template <class T, bool A> struct PlainAdam<rules::Adam<T, A, false>> : std::true_type {};

template <Fmt PF, Fmt SF, class Rule> void apply_lowp_run(const Rule& rule, const std::vector<Tensor>& ts, const Config& c);

// All tensors, one parallel region. With 8-bit or bf16 states the element loop is bound by the
// divider (bench/RESULTS.md: Adam's sqrt and two divisions, a third of the step): from the step
// where Adam's bc2_sqrt rounds to 1, its UnitBc2 form runs (the same bits, one division fewer).
// fp32 states stream at the memory wall: no gain there, and no second instantiation.
template <Fmt PF, Fmt SF, class Rule>
void apply_lowp(const Rule& rule, const std::vector<Tensor>& ts, const Config& c) {
  if constexpr (SF != Fmt::f32 && PlainAdam<Rule>::value)
    if (rule.bc2_sqrt == 1.0f) return apply_lowp_run<PF, SF>(rule.with_unit_bc2(), ts, c);
  apply_lowp_run<PF, SF>(rule, ts, c);
}

template <Fmt PF, Fmt SF, class Rule>
void apply_lowp_run(const Rule& rule, const std::vector<Tensor>& ts, const Config& c) {
  std::vector<int64_t> sizes;
  sizes.reserve(ts.size());
  for (const Tensor& t : ts) sizes.push_back(t.n);
  const auto chunks = make_chunks(sizes);
  // (work: the half param and grad, the master and up to two states, parallel.hpp)
  for_each_chunk(chunks, 5 * total_size(sizes), [&](const Chunk& ch) {
    const Tensor& t = ts[size_t(ch.tensor)];
    chunk<PF, SF, Rule>(rule, t, ch.start, ch.start + ch.len, c);
  });
}

}  // namespace lowp
}  // namespace optkern
