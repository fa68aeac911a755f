// The L-BFGS push's inner products of every history row with the new pair and g over one sub-block
// (lbfgs_blocks.hpp's push_block), in 64-byte lanes: one zmm per sum under AVX-512, two ymm halves
// otherwise -- the same bits either way. Included by lbfgs_blocks.hpp only.
#pragma once
#include <cstdint>
#include <cstring>

#include "cpu_avx2.hpp"
#include "lane_sums.hpp"
#include "optkern/common.hpp"
#include "optkern/rules/second_order.hpp"
#include "py_arrays.hpp"

namespace optkern {
namespace lbfgs {
namespace rs = rules;

// The five inner products of R rows (srow[r], yrow[r]) with the new pair and g, in one pass: 5 R sums
// in W = 64 / sizeof(T) lanes, lane l taking elements l, l + W, ... (folded in a fixed tree, the tail
// added in order), so the association of a sum depends on len only -- not on the thread count, the
// ISA, R or the row's neighbours. Each sum is held as H vectors of 64 / H bytes (GCC vector extension):
// H = 1 is one zmm (GCC lowers a 64-byte vector through the stack without AVX-512: 2.6x slower),
// H = 2 two ymm, vector h holding lanes h L .. h L + L - 1. The push is bound by loading the cached
// pair and g from L2 (3 x 128 KiB), not by memory: R rows a pass load them once for R rows, and a
// zmm load takes one issue slot for 64 bytes (32-byte lanes, 16M floats, k = 10: R = 2 81%, R = 3
// 81-83%, R = 4 84-85%, R = 8 57-59% of the read probe: its 40 accumulators spilled). Against the read
// probe over the push's own line-aligned arrays (CPU-time ratios, 2 threads, loaded VM, 2026-12-07),
// 32-byte lanes R = 4 -> these: 4M floats k = 10 75 / 70 -> 87 / 82%, k = 30 86 / 89 -> 98 / 101%;
// 16M k = 10 65 -> 76-77%. (Rows must start on 64-byte lines: optkern/_aligned.py; split loads ate
// the gain before.)
template <class T, int R, int H>
OK_LANE_INLINE void row_dots(int64_t len, const T* OK_RESTRICT sc, const T* OK_RESTRICT yc, const T* OK_RESTRICT gg,
                             const T* const* srow, const T* const* yrow, T (*v)[rs::kPushPerRow]) {
  typedef T V __attribute__((vector_size(64 / H)));  // held in registers
  constexpr int64_t W = 64 / int64_t(sizeof(T)), L = W / H;
  constexpr int Q = rs::kPushPerRow;
  // No software prefetch: 1 KiB ahead in each of the 2 R row streams read 64-70% -> 74-79% of the
  // read probe when this VM's memory read 77 GB/s, but 86-90% -> 83% when it read 48 (k = 11 / 100,
  // 2 threads, idle, 32-byte lanes), and without it 76-82 / 63 / 78% against 68-71 / 53 / 67% at
  // k = 100 / 10 / 30: the hardware prefetcher keeps up with 32768-column runs, and the per-line
  // branch costs issue slots.
  // (loads into a reference: a function returning an AVX vector would change the baseline clone's ABI)
  const auto ld = [](V& x, const T* p) { std::memcpy(&x, p, sizeof(V)); };
  V acc[R * Q][H] = {};
  int64_t i = 0;
  for (; i + W <= len; i += W) {
#pragma GCC unroll 2
    for (int h = 0; h < H; ++h) {
      V s, y, g;
      ld(s, sc + i + h * L);
      ld(y, yc + i + h * L);
      ld(g, gg + i + h * L);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        V sj, yj;
        ld(sj, srow[r] + i + h * L);
        ld(yj, yrow[r] + i + h * L);
        acc[r * Q + rs::kSnewYj][h] += s * yj;
        acc[r * Q + rs::kYnewSj][h] += y * sj;
        acc[r * Q + rs::kYnewYj][h] += y * yj;
        acc[r * Q + rs::kGSj][h] += g * sj;
        acc[r * Q + rs::kGYj][h] += g * yj;
      }
    }
  }
  T lanes[R * Q][W];  // (acc[q][h]'s lane l is lane h L + l of sum q)
  static_assert(sizeof(lanes) == sizeof(acc), "H vectors of L lanes make W lanes");
  std::memcpy(lanes, acc, sizeof(acc));
  for (auto& a : lanes)
    for (int64_t w = W / 2; w > 0; w /= 2)
      for (int64_t l = 0; l < w; ++l) a[l] += a[l + w];
  for (; i < len; ++i)
    for (int r = 0; r < R; ++r) {
      lanes[r * Q + rs::kSnewYj][0] += sc[i] * yrow[r][i];
      lanes[r * Q + rs::kYnewSj][0] += yc[i] * srow[r][i];
      lanes[r * Q + rs::kYnewYj][0] += yc[i] * yrow[r][i];
      lanes[r * Q + rs::kGSj][0] += gg[i] * srow[r][i];
      lanes[r * Q + rs::kGYj][0] += gg[i] * yrow[r][i];
    }
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < Q; ++q) v[r][q] = lanes[r * Q + q][0];
}

// Rows j, j + 1, ... k - 1 in passes of R, the last (k - j) mod R rows in one shorter pass (no row
// repeated). A pass walks its rows over the whole run [lo, lo + len) in pieces of `piece` columns:
// each row's sums in T within a piece (float32: twice the lanes, no conversions), then added to its
// float64 acc, piece after piece: each row's sums are those of one piece a visit, in the same order,
// so a run of several pieces (fewer restarts of each row's stream) changes no bits.
template <class T, int R, int H>
OK_LANE_INLINE void row_passes(const ArrayList& S, const ArrayList& Y, int64_t k, int64_t j, int64_t lo, int64_t len,
                               int64_t piece, const T* sc, const T* yc, const T* gg, double* acc) {
  for (; j + R <= k; j += R) {
    const T* srow[R];
    const T* yrow[R];
    for (int r = 0; r < R; ++r) {
      srow[r] = S.ptr<T>(size_t(j + r)) + lo;
      yrow[r] = Y.ptr<T>(size_t(j + r)) + lo;
    }
    for (int64_t p = 0; p < len; p += piece) {
      const int64_t pl = len - p < piece ? len - p : piece;
      T v[R][rs::kPushPerRow];
      row_dots<T, R, H>(pl, sc + p, yc + p, gg + p, srow, yrow, v);
      for (int r = 0; r < R; ++r) {
        for (int q = 0; q < rs::kPushPerRow; ++q) acc[(j + r) * rs::kPushPerRow + q] += double(v[r][q]);
        srow[r] += pl;
        yrow[r] += pl;
      }
    }
  }
  if constexpr (R > 1)
    if (j < k) row_passes<T, R - 1, H>(S, Y, k, j, lo, len, piece, sc, yc, gg, acc);
}

// Rows a pass: zmm, 5 R = 25 accumulators + 5 operands of AVX-512's 32 registers; ymm halves (16
// registers), R = 3 spills but ran 89 % of the read probe in an x86-64-v3 build against R = 1 / 2's
// 61 / 83 % (h279's standalone copy, k = 10, loaded VM).
constexpr int kRowsZmm = 5, kRowsYmm = 3;

#if OK_HAVE_CLONES
// The dispatch is explicit (not a clone of one body): the zmm form must not exist in a clone without
// AVX-512, nor the halves in the AVX-512 one. OPTKERN_NO_AVX512=1 runs the halves (cpu_avx2.hpp), so
// the tests pin both forms' bits on an AVX-512 machine.
template <class T>
__attribute__((target("arch=x86-64-v4"))) void push_rows_zmm(const ArrayList& S, const ArrayList& Y, int64_t k,
                                                             int64_t lo, int64_t len, int64_t piece, const T* sc,
                                                             const T* yc, const T* gg, double* acc) {
  row_passes<T, kRowsZmm, 1>(S, Y, k, 0, lo, len, piece, sc, yc, gg, acc);
}

template <class T>
__attribute__((target_clones("arch=x86-64-v3", "default"))) void push_rows_ymm(const ArrayList& S, const ArrayList& Y,
                                                                               int64_t k, int64_t lo, int64_t len,
                                                                               int64_t piece, const T* sc, const T* yc,
                                                                               const T* gg, double* acc) {
  row_passes<T, kRowsYmm, 2>(S, Y, k, 0, lo, len, piece, sc, yc, gg, acc);
}

inline bool push_rows_in_zmm() {
  static const bool ok = use_avx512() && __builtin_cpu_supports("x86-64-v4");
  return ok;
}

template <class T>
void push_rows(const ArrayList& S, const ArrayList& Y, int64_t k, int64_t lo, int64_t len, int64_t piece, const T* sc,
               const T* yc, const T* gg, double* acc) {
  if (push_rows_in_zmm())
    push_rows_zmm<T>(S, Y, k, lo, len, piece, sc, yc, gg, acc);
  else
    push_rows_ymm<T>(S, Y, k, lo, len, piece, sc, yc, gg, acc);
}
#else
template <class T>
OK_LANE_INLINE void push_rows(const ArrayList& S, const ArrayList& Y, int64_t k, int64_t lo, int64_t len,
                              int64_t piece, const T* sc, const T* yc, const T* gg, double* acc) {
#if defined(__AVX512F__)
  row_passes<T, kRowsZmm, 1>(S, Y, k, 0, lo, len, piece, sc, yc, gg, acc);
#else
  row_passes<T, kRowsYmm, 2>(S, Y, k, 0, lo, len, piece, sc, yc, gg, acc);
#endif
}
#endif

}  // namespace lbfgs
}  // namespace optkern
