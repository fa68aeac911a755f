// Deterministic block reductions for the normalization kernels: a shuffle
// tree inside each warp, then a tree over the warps' results, always in the
// same order, so a launch gives the same bits every run.
#pragma once
#include <cuda_runtime.h>

#include "optkern/rules/norm.hpp"

namespace optkern {
namespace normgpu {

template <class A> struct Sum2 { A a, b; };

template <class A> __device__ __forceinline__ Sum2<A> combine(const Sum2<A>& x, const Sum2<A>& y) {
  return {x.a + y.a, x.b + y.b};
}
template <class A>
__device__ __forceinline__ rules::Moments<A> combine(const rules::Moments<A>& x, const rules::Moments<A>& y) {
  return rules::merge(x, y);
}

template <class A> __device__ __forceinline__ Sum2<A> shfl_down(const Sum2<A>& v, int off) {
  return {__shfl_down_sync(0xffffffffu, v.a, off), __shfl_down_sync(0xffffffffu, v.b, off)};
}
template <class A> __device__ __forceinline__ rules::Moments<A> shfl_down(const rules::Moments<A>& v, int off) {
  return {__shfl_down_sync(0xffffffffu, v.n, off), __shfl_down_sync(0xffffffffu, v.mean, off),
          __shfl_down_sync(0xffffffffu, v.m2, off), __shfl_down_sync(0xffffffffu, v.lo, off)};
}

// Lane 0 ends with the warp's total (lanes whose partner is past 31 compute
// unused values; lane 0's tree never reads them).
template <class V> __device__ __forceinline__ V warp_reduce(V v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = combine(v, shfl_down(v, off));
  return v;
}

// Total over a 1-D block (blockDim.x a multiple of 32, at most 1024), returned
// to every thread. `smem` holds 32 values; `zero` is the empty value.
template <class V> __device__ V block_reduce(V v, V* smem, const V& zero) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_reduce(v);
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = warp_reduce(lane < nw ? smem[lane] : zero);
    if (lane == 0) smem[0] = v;
  }
  __syncthreads();
  const V out = smem[0];
  __syncthreads();  // smem may be reused right after
  return out;
}

// Σ at(j) over [0, n) by the whole block (call from every thread): each term converted to double,
// summed in double and rounded to A once, as the CPU's block_sum (cpp/lane_sums.hpp). In float each
// thread's sum of n / blockDim similar terms rounded every addition alike (weight_norm_backward's
// s = Σ dw v of 1e6 terms ±(1 + ~1e-4): dg 3e-5 off, and dv, which cancels where dw is near
// parallel to v, 1.2x its size).
template <class A, class At> __device__ A block_sum(int64_t n, At at) {
  __shared__ Sum2<double> ss[32];
  Sum2<double> q{0.0, 0.0};
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) q.a += double(at(j));
  return A(block_reduce(q, ss, Sum2<double>{0.0, 0.0}).a);
}

// Σ at(j)² over [0, n), as block_sum: each term squared in double (exact for float input, and it
// neither overflows nor underflows there) and summed in double, rounded to A once; the rounded result
// can overflow or underflow, which the caller's stats_ok sees. (A constant float32 row of 65536 in
// float accumulators: Σx² ~1e-5 off, RMS norm's y and weight norm's w ~100 ulps.) The CPU's
// sum_squares (cpp/norm_cpu.hpp) squares float32 in float32 and sums blocks of eight squares in
// float32 before double: within an ulp or so of this, not the same bits.
template <class A, class At> __device__ A block_sum_squares(int64_t n, At at) {
  return block_sum<A>(n, [&](int64_t j) {
    const double v = double(at(j));
    return v * v;
  });
}

// Moments of at(j), j < n, from their deviations around m summed by the whole block in double (call
// from every thread): rules::shifted_moments around m, as the CPU's remerged_moments.
template <class At> __device__ rules::Moments<double> block_moments_around(int64_t n, double m, At at) {
  __shared__ Sum2<double> ss[32];
  Sum2<double> s{0.0, 0.0};
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const double d = double(at(j)) - m;
    s.a += d;
    s.b = fma_t(d, d, s.b);
  }
  s = block_reduce(s, ss, Sum2<double>{0.0, 0.0});
  return rules::shifted_moments(rules::ShiftedSums<double>{n, m, s.a, s.b});
}

// Ulps a float64 mean merged by block_reduce may be off: a thread's K + Σ(x - K) / n rounded once,
// then once per level of the tree (at most 1024 threads: 10). rules::remerge_needed's k; batch norm's
// channels add one per split merged in order (stats_finalize_kernel).
constexpr double kTreeRoundings = 11.0;

// The moments `acc` of the n values at(j) merged by block_reduce (the same on every thread), or, for a
// float64 A whose threads' rounded means spoilt that merge (rules::remerge_needed: data a few ulps
// apart; 1e20 + {0..3} ulps had rstd 4-15 % off), those of the deviations around the merged mean
// summed again (block_moments_around). Call from every thread.
template <class A, class At>
__device__ rules::Moments<double> block_remerged_moments(const rules::Moments<double>& acc, int64_t n, At at) {
  if (!rules::remerge_needed<A>(acc, kTreeRoundings)) return acc;  // (block-uniform)
  return block_moments_around(n, acc.mean, at);
}

// The moments of at(j), j < M, in double (call from every thread; sm: 32 values): shifted sums per
// thread, again around their mean where the thread's first value was an outlier, the tree merge, the
// float64 remerge. The row norms' statistics (cuda/norm_rows.cu) and the R-operator's groups' low
// parts (cuda/norm_rop.cu: the same bits for a row, at the same block size).
template <class A, class At> __device__ rules::Moments<double> block_moments(int64_t M, At at, rules::Moments<double>* sm) {
  rules::ShiftedSums<double> t{0, 0.0, 0.0, 0.0};
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) rules::push_shifted(t, double(at(j)));
  if (rules::reshift_needed(t)) {  // (the thread's first value an outlier of its values)
    t = rules::reshifted(t);
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) rules::push_around(t, double(at(j)));
  }
  return block_remerged_moments<A>(block_reduce(rules::shifted_moments(t), sm, rules::Moments<double>{0.0, 0.0, 0.0, 0.0}),
                                   M, at);
}

// The mean low part (rules::mean_lo) of a group of M values at(j) with saved statistics (mu, rs): its
// moments again (block_moments) only where it is needed, else 0 (mu, rs block-uniform: call from
// every thread). The R-operator's groups (cuda/norm_rop.cu) and batch norm's channels (norm_channels.cu).
template <class A, class At> __device__ A block_mean_lo(A mu, A rs, int64_t M, At at, rules::Moments<double>* sm) {
  return rules::mean_lo_needed(mu, rs) ? rules::mean_lo(block_moments<A>(M, at, sm), mu, rs) : A(0);
}

// Every group's mean low part into lo[g] (block_mean_lo): a block a group of the G groups, each of M
// values at(g, j), saved statistics (mean[g], rstd[g]). One loop for batch norm's channels
// (cuda/norm_channels.cu) and the R-operator's groups (cuda/norm_rop.cu), each with its accessor.
template <int Threads, class A, class At>
__global__ void __launch_bounds__(Threads)
group_lo_kernel(At at, const A* __restrict__ mean, const A* __restrict__ rstd, int64_t G, int64_t M, A* __restrict__ lo) {
  __shared__ rules::Moments<double> sm[32];
  for (int64_t g = blockIdx.x; g < G; g += gridDim.x) {
    const A l = block_mean_lo<A>(mean[g], rstd[g], M, [&](int64_t j) { return at(g, j); }, sm);
    if (threadIdx.x == 0) lo[g] = l;
  }
}

}  // namespace normgpu
}  // namespace optkern
