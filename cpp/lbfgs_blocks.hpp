// The per-ISA sub-block loops of the two L-BFGS memory passes (cpp/lbfgs.cpp drives them over
// column chunks): the push's inner products of every history row with the new pair and gradient,
// and the direction's accumulation over the rows. Included by lbfgs.cpp only.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "lane_sums.hpp"
#include "lbfgs_row_dots.hpp"
#include "optkern/common.hpp"
#include "optkern/rules/second_order.hpp"
#include "py_arrays.hpp"
#include "stream_store.hpp"

namespace optkern {
namespace lbfgs {
namespace rs = rules;

// Columns per sub-block, both passes: the cached operands (push: the new pair and g, 3 x 128 KiB in
// float32; direction: the accumulator, 128 KiB) stay in L2 (Zen 4: 1 MiB a core) while each history
// row streams a 32768-column run past them: the longer each row's run, the fewer restarts of the
// hardware-prefetched streams and DRAM pages (the direction's earlier 4096 columns, its accumulator
// in L1, gave each of 200 rows a 16 KiB run at history 100). Push alone, 16M floats, 2 threads, one
// row per pass, k = 10 / 100 (2026-12-01, idle): 2048 columns 53 / 476 ms, 4096 48 / 425, 8192 45 /
// 374, 16384 43 / 364, 32768 43 / 344. Direction against the read probe over its own arrays, back
// to back, 4M floats, 2 threads, 2026-12-07 with the 2 cores loaded 15-21 (so the ratio of process
// CPU times, probe / pass: the wall clock timed the scheduler), medians of 4-8 pairs, k = 10 / 30 /
// 100: 4096 columns 75 / 88 / 89-93%, 16384 84 / 100 / 101%, 32768 91 / 102 / 99-102%.
constexpr int64_t kSub = 32768;

// Columns of one push_block call, the run each history row streams a visit: 256 KiB of a row whatever
// T (float32 65536 columns = one parallel.hpp chunk, float64 32768), with the pair and g (3 x 256 KiB)
// still in L2. The sums keep kSub-column pieces (row_passes), so the bits are kSub's. Push alone,
// process CPU time against 32768-column runs, 2 threads, 6 processes each alternated, host loaded
// 13-18 (2026-12-07): 8M k = 100 median pair ratio 0.87 [0.81, 1.14], 16M k = 10 1.00 [0.97, 1.02].
template <class T>
constexpr int64_t push_run() {
  return kSub * int64_t(sizeof(double) / sizeof(T));
}

// One run of the push pass (compiled per ISA level; len <= push_run<T>()): the new pair, then the
// dots of every row with the cache-resident new pair and gradient, added to acc kSub columns at a
// time (the pair's own sums too). The pair is formed in this
// thread's `scratch` (2 len values, in L2), which the row dots read, and then written to
// s_new, y_new: streamed when `stream` (vectors of 16 MiB and up), so that those two are written
// once instead of first being read (write-allocate) -- 2 of the 8 array passes the push makes
// besides its rows (g, prev_g, d read; s_new, y_new, prev_g written).
template <class T>
OK_CLONES void push_block(const ArrayList& S, const ArrayList& Y, int64_t k, int64_t lo, int64_t len, T* sn, T* yn,
                          const T* g, T* prev_g, const T* d, T t, T* scratch, bool stream, double* acc) {
  T* OK_RESTRICT sc = scratch;
  T* OK_RESTRICT yc = scratch + len;  // (the caller's scratch holds 2 len values, len <= push_run<T>())
  T* OK_RESTRICT pg = prev_g + lo;
  const T* OK_RESTRICT gg = g + lo;
  const T* OK_RESTRICT dd = d + lo;
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    yc[i] = gg[i] - pg[i];
    sc[i] = t * dd[i];
    pg[i] = gg[i];
  }
  push_rows<T>(S, Y, k, lo, len, kSub, sc, yc, gg, acc);
  for (int64_t p = 0; p < len; p += kSub) {  // the pair's own sums, per kSub piece as the rows'
    const int64_t pl = std::min(kSub, len - p);
    T v[rs::kPushSelf];
    lane_sums<rs::kPushSelf, T>(pl, [&](int64_t i, T* w) {
      w[rs::kYS] = yc[p + i] * sc[p + i];
      w[rs::kYY] = yc[p + i] * yc[p + i];
      w[rs::kGS] = gg[p + i] * sc[p + i];
      w[rs::kGY] = gg[p + i] * yc[p + i];
    }, v);
    for (int q = 0; q < rs::kPushSelf; ++q) acc[rs::kPushPerRow * k + q] += double(v[q]);
  }
  streaming::write_row(sn + lo, len, stream, [&](int64_t i) { return sc[i]; });
  streaming::write_row(yn + lo, len, stream, [&](int64_t i) { return yc[i]; });
  if (stream) streaming::stream_fence();
}

// One sub-block of the direction pass: d = g_scale g + sum_j cy_j y_j + cs_j s_j, accumulated in T
// in this thread's `acc` (kSub values, in L2) in the rule's order (rules::direction_add; float32 keeps
// the full SIMD width); returns g.d over the block and raises *m to max |d| (NaN-sticky through
// *nan). Rows go two pairs at a time: one pair per pass kept two streams in flight per thread and
// read 15.8-17.1 GB/s, two pairs 21.2 GB/s (a standalone copy of this loop, 16M floats, k = 10,
// 2 threads); four pairs were no faster (k = 100, within the spread).
template <class T>
OK_CLONES double direction_block(const ArrayList& S, const ArrayList& Y, int64_t k, int64_t lo, int64_t len,
                                 const double* cs, const double* cy, const T* g, double g_scale, T* d, bool stream,
                                 T* OK_RESTRICT acc, double* m, int* nan) {
  const T* OK_RESTRICT gg = g + lo;
  const T gs = T(g_scale);
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) acc[i] = rs::direction_start(gs, gg[i]);
  int64_t j = 0;
  for (; j + 2 <= k; j += 2) {  // two row pairs per pass: four memory streams in flight, not two
    const T* OK_RESTRICT s0 = S.ptr<T>(size_t(j)) + lo;
    const T* OK_RESTRICT y0 = Y.ptr<T>(size_t(j)) + lo;
    const T* OK_RESTRICT s1 = S.ptr<T>(size_t(j + 1)) + lo;
    const T* OK_RESTRICT y1 = Y.ptr<T>(size_t(j + 1)) + lo;
    const T a0 = T(cy[j]), b0 = T(cs[j]), a1 = T(cy[j + 1]), b1 = T(cs[j + 1]);
#pragma omp simd
    for (int64_t i = 0; i < len; ++i)
      acc[i] = rs::direction_add(rs::direction_add(acc[i], a0, y0[i], b0, s0[i]), a1, y1[i], b1, s1[i]);
  }
  if (j < k) {
    const T* OK_RESTRICT sj = S.ptr<T>(size_t(j)) + lo;
    const T* OK_RESTRICT yj = Y.ptr<T>(size_t(j)) + lo;
    const T a = T(cy[j]), b = T(cs[j]);
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) acc[i] = rs::direction_add(acc[i], a, yj[i], b, sj[i]);
  }
  double mx = *m;
  int bad = 0;
#pragma omp simd reduction(max : mx) reduction(| : bad)
  for (int64_t i = 0; i < len; ++i) {
    const double a = std::fabs(double(acc[i]));
    mx = a > mx ? a : mx;
    bad |= (a != a);
  }
  *m = mx;
  *nan |= bad;
  // d written once (streamed when large: not read first, as push_block's pair)
  streaming::write_row(d + lo, len, stream, [&](int64_t i) { return acc[i]; });
  if (stream) streaming::stream_fence();
  return lane_sum<double>(len, [&](int64_t i) { return double(gg[i]) * double(acc[i]); });
}

}  // namespace lbfgs
}  // namespace optkern
