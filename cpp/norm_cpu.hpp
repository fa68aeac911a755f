// CPU building blocks of the normalization loops: chunked shifted two-pass
// statistics and OpenMP drivers whose results never depend on the number of
// threads (work splits only decide who computes a row or block, not how).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "optkern/common.hpp"
#include "lane_sums.hpp"
#include "parallel.hpp"
#include "stream_store.hpp"
#include "optkern/rules/norm.hpp"

namespace optkern {
namespace normcpu {
using namespace optkern::streaming;  // stream_row, write_row, stream_output, stream_fence

// Statistics chunk: small enough that the second pass reads from L1.
constexpr int64_t kStatChunk = 2048;
// Row blocks holding parameter-gradient partials (fixed: from shapes only).
constexpr int64_t kGradBlocks = 64;

// Moments of x[0..n) by a corrected two-pass method (Chan, Golub, LeVeque):
//   pass 1: s = Σx in double (the floats converted exactly), mean = s / n, m = mean rounded to T;
//   pass 2: q = Σ(x - m)² as a block_sum (lane_sums.hpp: float lanes, blocks of 8 terms a lane
//   added in double), M2 = q - n (mean - m)².
// The mean is as good as a double sum: a float32 sum of the deviations Σ(x - x[0]) rounded to
// float32 left means of data centred near 0 thousands of ulps off (Σ x̂, exactly 0, came out ~1e-3 N:
// a dy with a common offset, 10 + small, gave dweight = Σ dy x̂ many times its true size).
// M2 never rounds the mean to x's magnitude: with data near 1e4 and a spread of a few rounding steps
// the terms x - m are exact (x within a factor 2 of m) and n (mean - m)² corrects for m's rounding;
// for data near 0, x - m rounds but the correction is then negligible beside M2. q in float32 lanes
// of a whole chunk (64 terms a lane) rounded alike for data of few distinct values (half a, half b:
// rstd 3-4 ulps off where torch's is 0.2); in blocks of 8 terms, < 1 ulp.
// A double x is the exception: its Σx is that sum's rounding (some ulps of x's magnitude; serial over
// a batch-norm block's 16K / C rows, tens), m = mean itself, and the correction was 0: a constant
// float64 row of 1e20 had M2 = n ulp², y = ±1, not 0; and the merges of such chunks' means (Chan)
// took their errors into M2 at first order (1e6 + N(0, 1) in (300000, 4): rstd 2.4e4 ulps off). So a
// double T's deviations d = Σ(x - m) are summed too, in q's pass (exact terms for data near m): the
// moments are rules::shifted_moments around m, as the GPU's shifted sums, with the mean's low part
// (rules::Moments::lo) for the merges.
template <class T> OK_INLINE T sq_dev(T x, T m) { return (x - m) * (x - m); }
using rules::corrected_m2;      // M2 from q and mean - m
using rules::two_pass_moments;  // the moments from n, Σx, m, q and d
// q = Σ(x - m)² (a block_sum) and, for a double T, d = Σ(x - m) in the same pass (0 for a float T: its
// Σx in double is exact to far below its ulp).
template <class T, class F> OK_INLINE std::pair<double, double> dev_sums(int64_t n, T m, F&& at) {
  if constexpr (sizeof(T) == sizeof(double)) {
    return lane_sum_pair<double>(n, [&](int64_t i) {
      const double v = at(i);
      return std::pair<double, double>{sq_dev(v, double(m)), v - double(m)};
    });
  } else {
    return {block_sum<T>(n, [&](int64_t i) { return sq_dev(at(i), m); }), 0.0};
  }
}
// The moments of n values with Σx = s from their sums (q, d) = dev(m) around m = T(s / n) (given: m
// and qd), again around the mean those give where m sat far from it (rules::recentre_needed: a
// double T's Σx rounded, data a few ulps apart; the merges then need no second look at the values:
// 1e20 + {0..3} ulps at n = 3001 had rstd 8 % off).
template <class T, class Dev>
OK_INLINE rules::Moments<double> centred_moments(double n, double s, T m, std::pair<double, double> qd, Dev&& dev) {
  if (rules::recentre_needed(qd.first, qd.second, n)) {
    m = T(two_pass_moments<T>(n, s, m, qd.first, qd.second).mean);
    qd = dev(m);
  }
  return two_pass_moments<T>(n, s, m, qd.first, qd.second);
}
template <class T, class F> OK_INLINE rules::Moments<double> two_pass(int64_t n, F&& at) {
  const double s = lane_sum<double>(n, [&](int64_t i) { return double(at(i)); });
  const auto dev = [&](T m) { return dev_sums<T>(n, m, at); };
  const T m = T(s / double(n));
  return centred_moments<T>(double(n), s, m, dev(m), dev);
}
template <class T> OK_INLINE rules::Moments<double> chunk_moments(const T* OK_RESTRICT x, int64_t n) {
  return two_pass<T>(n, [&](int64_t i) { return x[i]; });
}

// Moments of a contiguous run, chunk by chunk merged in order (Chan).
template <class T> OK_INLINE rules::Moments<double> moments(const T* x, int64_t n) {
  rules::Moments<double> acc{0.0, 0.0, 0.0, 0.0};
  for (int64_t c = 0; c < n; c += kStatChunk) acc = rules::merge<sizeof(T) == sizeof(double)>(acc, chunk_moments(x + c, std::min(kStatChunk, n - c)));
  return acc;
}

// A row's mean low part (rules::mean_lo; 0 where not needed, no pass over x): the row's moments again,
// as the forward's (the CPU counterpart of CUDA's block_mean_lo, cuda/norm_reduce.cuh).
template <class T> OK_INLINE T row_mean_lo(const T* x, int64_t n, T mu, T rs) {
  return rules::mean_lo_needed(mu, rs) ? rules::mean_lo(moments(x, n), mu, rs) : T(0);
}

// The moments of each of the C channels of x (N, C, S) (batch norm's statistics: cpp/norm_channels.cpp,
// blocks of rows reduced in parallel and merged in order; bits independent of the thread count).
// Also the R-operator's batch-norm groups' (cpp/norm_rop.cpp: the forward's moments of each column).
template <class T> std::vector<rules::Moments<double>> channel_moments(const T* x, int64_t N, int64_t C, int64_t S);

// Whether any of the C channels' statistics (mean, rstd) needs a mean low part (rules::mean_lo_needed).
template <class T> bool lows_needed(const T* mean, const T* rstd, int64_t C) {
  bool any = false;
  for (int64_t c = 0; c < C; ++c) any |= rules::mean_lo_needed(mean[c], rstd[c]);
  return any;
}

// The C channels' mean low parts (rules::mean_lo) for statistics (mean, rstd): empty where no channel
// needs one (|mean| rstd <= 1: moments_of not called, no pass over the data), else lo[c], 0 for the
// channels that do not. moments_of(): the channels' moments (channel_moments or the half kernel's).
// One loop (fill_lows, also channel_stats') for batch norm's backward (cpp/norm_channels.cpp) and the
// R-operator's columns (cpp/norm_rop.cpp).
template <class T>
void fill_lows(const std::vector<rules::Moments<double>>& m, const T* mean, const T* rstd, int64_t C, T* lo) {
  for (int64_t c = 0; c < C; ++c) lo[c] = rules::mean_lo(m[size_t(c)], mean[c], rstd[c]);
}
template <class T, class F> std::vector<T> channel_lows(const T* mean, const T* rstd, int64_t C, F&& moments_of) {
  if (!lows_needed(mean, rstd, C)) return {};
  std::vector<T> lo(static_cast<size_t>(C));
  fill_lows(moments_of(), mean, rstd, C, lo.data());
  return lo;
}

// Σx² (RMS norm, ‖v‖ of weight norm) by block_sum, returned in double: for float32 x each square is
// x[i] * x[i] rounded to float32, eight squares a lane summed in float32, those block sums added in
// double lanes and the lanes in double (cpp/lane_sums.hpp); for float64 x all in double. Not float32
// lanes of thousands of terms, rows of similar values rounded every addition the same way (a
// constant row of 65536 float32 values had Σx² 2e-5 off: y = 1 ± 1e-5, ~100 ulps, where torch's is
// within one). Not the GPU's bits for float32: cuda/norm_reduce.cuh's block_sum_squares squares in
// double (exact) and sums every term in double (the two within an ulp or so of the sum).
// Rounded to T it can overflow or underflow, which the caller's stats_ok sees; RMS norm forms
// 1 / sqrt(Σx² / n + eps) from the double and rounds that once (as layer norm's rstd).
template <class T> OK_INLINE double sum_squares(const T* OK_RESTRICT x, int64_t n) {
  return block_sum<T>(n, [&](int64_t i) { return x[i] * x[i]; });
}

// ---- The scaled fallback of rules/norm.hpp (rare: extreme or non-finite rows) ----
// `at(i)` reads element i of the row or channel, i in [0, n).

// max |at(i)|, NaN if any element is NaN.
template <class T, class F> T max_abs_of(int64_t n, F&& at) {
  T a = T(0);
  for (int64_t i = 0; i < n; ++i) a = rules::max_abs(a, at(i));
  return a;
}

// Σ at(i)² = ssq · 4^e (NaN for a row holding NaN or ±inf).
// The scaled sums are those of the plain path above (sum_squares, chunk_moments) on x · 2^-e: Σ by
// block_sum, the moments around the double mean rounded to T and corrected. ssq is rounded to T here,
// and the callers' norm_scaled / rsqrt_scaled (rules/norm.hpp) take the root in T: two roundings or
// more where the plain path rounds once. (One T
// accumulator, element by element, rounded every addition of a long row alike: float32 rows of
// 65536 values ±c near the overflow of x², or tiny with a tiny eps, had y, rstd, the running
// variance and ‖v‖ 2e-4 to 6e-4 off, where the same data in the normal range are within an ulp.)
template <class T, class F> rules::ScaledSq<T> scaled_sum_squares(int64_t n, F&& at) {
  const T amax = max_abs_of<T>(n, at);
  if (!rules::finite_(amax)) return {T(NAN), 0};
  if (amax == T(0)) return {T(0), 0};
  const int e = rules::scale_exp(amax);
  const double s = block_sum<T>(n, [&](int64_t i) {
    const T v = rules::scale2(at(i), -e);
    return v * v;
  });
  return {T(s), e};
}

// Mean and M2 of the row with M2 = m2 · 4^e (the corrected two-pass of chunk_moments on x · 2^-e).
template <class T, class F> rules::ScaledMoments<T> scaled_moments(int64_t n, F&& at) {
  const T amax = max_abs_of<T>(n, at);
  if (!rules::finite_(amax)) return {T(NAN), T(NAN), 0};
  if (amax == T(0)) return {T(0), T(0), 0};
  const int e = rules::scale_exp(amax);
  // (x · 2^-e in (-2, 2), exact in double; the mean scaled back in double and rounded once)
  const auto mo = two_pass<T>(n, [&](int64_t i) { return rules::scale2(at(i), -e); });
  return {T(rules::scale2(mo.mean, e)), T(mo.m2), e};
}

// ---- dy near the max: the redo of rules/norm.hpp (rare: groups whose dx or parameter sum overflowed) ----
// `at(i)` gives element i's rules::GradElem (dy, γ, x̂), i in [0, n), `put(i, v)` writes its dx;
// serial, in order.
using rules::GradElem;

// dx of a group (mean(g) and mean(g x̂) over its n elements; rms: no mean(g)) with dy, γ scaled.
template <class T, class At, class Put> void dx_group_scaled(int64_t n, T r, bool rms, At&& at, Put&& put) {
  T mdy = T(0), mw = T(0);
  for (int64_t i = 0; i < n; ++i) {
    const GradElem<T> e = at(i);
    mdy = rules::max_abs(mdy, e.dy), mw = rules::max_abs(mw, e.w);
  }
  const rules::GradScale sc = rules::grad_scale(mdy, mw);
  if (!rules::scales(sc)) return;
  T sg = T(0), sgx = T(0);
  for (int64_t i = 0; i < n; ++i) {
    const GradElem<T> e = at(i);
    const T g = rules::scaled_g(e.dy, e.w, sc);
    sg += g, sgx += g * e.xhat;
  }
  const T mg = rms ? T(0) : sg / T(n), mgx = sgx / T(n);
  for (int64_t i = 0; i < n; ++i) {
    const GradElem<T> e = at(i);
    put(i, rules::norm_dx_scaled(e.dy, e.w, e.xhat, r, mg, mgx, sc));
  }
}

// A block of rows' dγ, dβ partials, for the row norms' backward (cpp/norm_rows.cpp; dw, db: [W]
// doubles, null when not wanted). Runs (S > 1) add their double sums; rows (S = 1: one term an
// entry) add their terms in T to sw, sb, which flush() moves into the doubles every kBlockTerms rows,
// as block_sum's float blocks (each term converted and added in double took layer norm's backward
// ~15 % longer).
template <class T> struct ParamPartials {
  double *dw, *db;
  std::vector<T> sw, sb;
  int64_t rows = 0;
  ParamPartials(double* dw_, double* db_, int64_t W, bool staged)
      : dw(dw_), db(db_), sw(dw_ && staged ? size_t(W) : 0, T(0)), sb(db_ && staged ? size_t(W) : 0, T(0)) {}
  void row_done() {
    if (++rows % kBlockTerms == 0) flush();
  }
  void flush() {
    for (size_t j = 0; j < sw.size(); ++j) dw[j] += double(sw[j]), sw[j] = T(0);
    for (size_t j = 0; j < sb.size(); ++j) db[j] += double(sb[j]), sb[j] = T(0);
  }
};

// dγ = Σ dy x̂ and dβ = Σ dy of one parameter entry again, dy scaled, where the plain sum (*dw, *db;
// either may be null) is not finite. The scaled terms (each rounded to T as the plain sums' are) are
// summed in double and scaled back before the one rounding to T, as the plain sums (a float32 sum
// of a channel's thousands of terms was ulps off the exact one: tests/test_hunt45e_param_sums.py).
template <class T, class At> void param_sums_scaled(int64_t n, At&& at, T* dw, T* db) {
  T mdy = T(0);
  for (int64_t i = 0; i < n; ++i) mdy = rules::max_abs(mdy, at(i).dy);
  const int a = rules::grad_scale(mdy, T(0)).a;
  if (a == 0) return;
  double sw = 0, sb = 0;
  for (int64_t i = 0; i < n; ++i) {
    const GradElem<T> e = at(i);
    const T d = rules::scale2(e.dy, -a);
    sw += double(d * e.xhat), sb += double(d);
  }
  if (dw && !rules::finite_(*dw)) *dw = T(rules::param_unscaled(sw, a));
  if (db && !rules::finite_(*db)) *db = T(rules::param_unscaled(sb, a));
}

// Batch norm's (N, C, S) channels after its dx pass (cpp/norm_channels.cpp): those whose dx came out
// non-finite again, dy and γ scaled (eval mode: each such element, dx = r γ dy having no group sums);
// then dγ, dβ where not finite. bad[t]: task t's dx (row t of C when S = 1, else run (n, c) = t) is not.
template <class T> struct ChannelGrads {
  const T *dy, *x, *mean, *rstd, *w;
  T* dx;
  int64_t N, C, S;
  bool training;
  const T* lo = nullptr;  // the channels' mean low parts (rules::mean_lo; null: none)
  int64_t at(int64_t c, int64_t i) const { return ((i / S) * C + c) * S + i % S; }  // element i of channel c
};
template <class T> void redo_channels(const ChannelGrads<T>& k, const char* bad_tasks, T* dw, T* db) {
  const int64_t C = k.C, n = k.N * k.S, tasks = k.S == 1 ? k.N : k.N * C;
  std::vector<char> bad(size_t(C), 0);
  for (int64_t t = 0; t < tasks; ++t) {
    if (!bad_tasks[t]) continue;
    if (k.S > 1) bad[size_t(t % C)] = 1;
    else
      for (int64_t c = 0; c < C; ++c) bad[size_t(c)] |= !rules::finite_(k.dx[t * C + c]);
  }
  for (int64_t c = 0; c < C; ++c) {
    const auto elem = [&](int64_t i) {
      const int64_t e = k.at(c, i);
      return GradElem<T>{k.dy[e], k.w[c], rules::normalize_safe(k.x[e], k.mean[c], k.lo ? k.lo[c] : T(0), k.rstd[c])};
    };
    if (bad[size_t(c)] && k.training)
      dx_group_scaled<T>(n, k.rstd[c], false, elem, [&](int64_t i, T v) { k.dx[k.at(c, i)] = v; });
    for (int64_t i = 0; bad[size_t(c)] && !k.training && i < n; ++i) {
      T& d = k.dx[k.at(c, i)];
      const T g = k.dy[k.at(c, i)];
      if (!rules::finite_(d))
        d = rules::norm_dx_scaled(g, k.w[c], T(0), k.rstd[c], T(0), T(0),
                                  rules::grad_scale(rules::max_abs(T(0), g), rules::max_abs(T(0), k.w[c])));
    }
    if ((dw && !rules::finite_(dw[c])) || (db && !rules::finite_(db[c])))
      param_sums_scaled<T>(n, elem, dw ? dw + c : nullptr, db ? db + c : nullptr);
  }
}

// ‖x‖₂ of a contiguous row: the fast sum (sum_squares: float32 squares of float32 x) unless it
// overflowed or underflowed (seen on the sum rounded to T), its square root taken in double and
// rounded once (sqrt of the float32 sum: 1 ulp off in ~13%); else the scaled path, rounded more.
template <class T> OK_INLINE T row_norm2(const T* OK_RESTRICT x, int64_t n) {
  const double ss = sum_squares(x, n);
  if (rules::stats_ok(T(0), T(ss), T(0))) return T(std::sqrt(ss));
  const auto q = scaled_sum_squares<T>(n, [&](int64_t i) { return x[i]; });
  return rules::norm_scaled(q.ssq, q.e);
}

// f(nz) with the normalizer of a row or channel's (mean, r): the plain (x - mean) · r, or where x - mean
// may overflow (rules::normalize_needs_scaling: σ near the dtype's max) the scaled one. f is compiled
// for both; the common rows run the plain one's loops as they were. f, and the per-element lambdas
// in it, are declared OK_INLINE_LAMBDA: a lambda GCC finds too large to inline is compiled once, for
// the baseline ISA, outside the target_clones of its caller (no FMA: fma_t a library call; the row
// kernels ran 5-10x slower).
#if defined(__GNUC__)
#define OK_INLINE_LAMBDA __attribute__((always_inline))
#else
#define OK_INLINE_LAMBDA
#endif
// (lo: the mean's low part, rules::mean_lo; 0 gives the plain formula's bits.)
template <class T, class F> OK_INLINE void with_normalizer(T mean, T r, T lo, F&& f) {
  if (rules::normalize_needs_scaling(r)) f(rules::scaled_normalizer(mean, r));
  else f(rules::Normalizer<T>{mean, r, lo});
}
template <class T, class F> OK_INLINE void with_normalizer(T mean, T r, F&& f) { with_normalizer(mean, r, T(0), f); }

// with_normalizer for channel c given the channels' mean low parts lo (null: none): where lo[c] is 0
// the loops compiled without it (a channel of ordinary data keeps its instructions and bits).
template <class T, class F> OK_INLINE void with_normalizer(T mean, T r, const T* lo, int64_t c, F&& f) {
  if (lo && lo[c] != T(0)) with_normalizer(mean, r, lo[c], f);
  else with_normalizer(mean, r, f);
}

// The kernels vectorized across channels (batch norm of (N, C)) choose once per call: when any
// channel needs the scaled normalizer or a mean low part (lo, null: none; rules::mean_lo), every
// channel's is held as (f, mf, rf, lo) ([4][C] in `v`), the others' as (1, -mean, r, 0), whose
// (fma(x, 1, -mean) - 0) · r rounds as (x - mean) · r (rules::normalize(x, ScaledNormalizer, lo)).
// Else `v` is empty (data() null: the plain formula's loops).
template <class T> struct ChannelScaling {
  std::vector<T> v;
  ChannelScaling(const T* mean, const T* r, int64_t C, const T* lo = nullptr) {
    bool any = lo != nullptr && C > 0;
    for (int64_t c = 0; c < C; ++c) any |= rules::normalize_needs_scaling(r[c]);
    if (!any) return;
    v.resize(size_t(4 * C));
    for (int64_t c = 0; c < C; ++c) {
      const auto n = rules::normalize_needs_scaling(r[c]) ? rules::scaled_normalizer(mean[c], r[c])
                                                          : rules::ScaledNormalizer<T>{T(1), -mean[c], r[c]};
      v[size_t(c)] = n.f, v[size_t(C + c)] = n.mf, v[size_t(2 * C + c)] = n.rf;
      v[size_t(3 * C + c)] = lo ? lo[c] : T(0);  // (0 for a scaled channel: rules::mean_lo)
    }
  }
  const T* data() const { return v.empty() ? nullptr : v.data(); }
};

// Channel c's normalizer from a ChannelScaling's data (C channels), and x̂ of its value x.
template <class T> OK_INLINE rules::ScaledNormalizer<T> channel_normalizer(const T* ns, int64_t C, int64_t c) {
  return {ns[c], ns[C + c], ns[2 * C + c]};
}
template <class T> OK_INLINE T channel_xhat(T x, const T* ns, int64_t C, int64_t c) {
  return rules::normalize(x, channel_normalizer(ns, C, c), ns[3 * C + c]);
}

// Ask for the next row while this one is written: a row is often one 4 KiB
// page, where the hardware streamer stops, so its first lines would
// otherwise arrive only when the statistics pass stalls on them.
template <class T> OK_INLINE void prefetch_row(const T* x, int64_t n) {
#if defined(__GNUC__)
  constexpr int64_t line = 64 / int64_t(sizeof(T));
  for (int64_t j = 0; j < n; j += line) __builtin_prefetch(x + j, 0, 2);
#else
  (void)x, (void)n;
#endif
}

// f(i) for i in [0, n), in parallel when `work` (elements touched) is large.
template <class F> void parallel_for(int64_t n, int64_t work, F&& f) {
#ifdef _OPENMP
  const int threads = max_threads();
  if (n > 1 && threads > 1 && work >= serial_below(threads)) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#endif
  (void)work;
  for (int64_t i = 0; i < n; ++i) f(i);
}

// f(r0, r1) over ranges of rows of `row_len` elements (about 16K elements a range).
template <class F> void parallel_ranges(int64_t rows, int64_t row_len, F&& f) {
  const int64_t per = std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(row_len, 1));
  const int64_t nr = (rows + per - 1) / per;
  // (work: the input, the output and a statistics pass over each row, parallel.hpp)
  parallel_for(nr, 3 * rows * row_len, [&](int64_t k) { f(k * per, std::min(rows, (k + 1) * per)); });
}

}  // namespace normcpu
}  // namespace optkern

// run_range(kernel, i0, i1) calls kernel(i) for i in [i0, i1), compiled once
// per ISA level (GCC target_clones needs plain functions, not templates),
// then fences the streamed stores of the range.
#define OK_NORM_CLONE_RANGE(Kernel)                                                   \
  OK_CLONES void run_range(const Kernel<float>& k, int64_t i0, int64_t i1) {          \
    for (int64_t i = i0; i < i1; ++i) k(i);                                           \
    optkern::normcpu::stream_fence();                                                 \
  }                                                                                   \
  OK_CLONES void run_range(const Kernel<double>& k, int64_t i0, int64_t i1) {         \
    for (int64_t i = i0; i < i1; ++i) k(i);                                           \
    optkern::normcpu::stream_fence();                                                 \
  }
