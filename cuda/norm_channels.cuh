// Per-channel reductions on the GPU over x viewed as (N, C, S): batch-norm
// statistics, batch-norm gradient sums, and the parameter gradients of the
// row normalizations. The batch is cut into K fixed splits (from the shape
// only); each (split, channel tile) block reduces in a fixed tree order, then
// one thread per channel merges the K partials in order: same bits every run.
#pragma once
#include <algorithm>

#include "norm_common.cuh"
#include "norm_reduce.cuh"
#include "norm_scaled.cuh"

namespace optkern {
namespace normgpu {

// Moments of x (batch-norm statistics): each thread's shifted sums in double (rules::push_shifted),
// merged as moments in double (Part).
template <class T, class A> struct StatsOp {
  using Acc = rules::ShiftedSums<double>;
  using Part = rules::Moments<double>;
  const T* x;
  __device__ Acc zero() const { return {0, 0.0, 0.0, 0.0}; }
  __device__ Part part_zero() const { return {0.0, 0.0, 0.0, 0.0}; }
  __device__ void push(Acc& acc, int64_t, int64_t, int64_t i) const { rules::push_shifted(acc, double(load(x, i))); }
  // The thread's values again around their mean where its first value was an outlier of them
  // (rules::reshift_needed): true after resetting acc for push_again.
  __device__ bool again(Acc& acc) const {
    if (!rules::reshift_needed(acc)) return false;
    acc = rules::reshifted(acc);
    return true;
  }
  __device__ void push_again(Acc& acc, int64_t, int64_t, int64_t i) const {
    rules::push_around(acc, double(load(x, i)));
  }
  __device__ Part finish(const Acc& acc) const { return rules::shifted_moments(acc); }
};

// Σ dy and Σ dy x̂; statistics per channel (batch norm) or per row n G + c / Cg
// (row normalizations; no mean for RMS norm). Each term in A, summed in double for every dtype as the
// CPU's GradSumKernel (rules::grad_means): in float, float32 channels of 524288 values with
// dy = 1 + 0.01 N (every addend rounding alike) had dβ an ulp off, and dγ 3.4e-5 and batch norm's dx
// 1.2e-5 relative off the exact sums of their terms (tests/test_cuda_hunt44h_bn_grad_sums.py).
template <class T, class A> struct GradSumOp {
  using Acc = Sum2<double>;
  using Part = Acc;
  const T *dy, *x;
  const A *mean, *rstd;
  int64_t G, Cg;
  bool per_row;
  const A* lo = nullptr;  // the rows' mean low parts (rules::mean_lo; null: none)
  __device__ Acc zero() const { return {0.0, 0.0}; }
  __device__ Part part_zero() const { return zero(); }
  __device__ Part finish(const Acc& acc) const { return acc; }
  __device__ bool again(Acc&) const { return false; }  // (sums need no second pass)
  __device__ void push_again(Acc&, int64_t, int64_t, int64_t) const {}
  __device__ A xhat(int64_t n, int64_t c, int64_t i) const {
    const int64_t k = per_row ? n * G + c / Cg : c;
    return rules::normalize_safe(A(load(x, i)), mean ? mean[k] : A(0), lo ? lo[k] : A(0), rstd[k]);
  }
  __device__ void push(Acc& acc, int64_t n, int64_t c, int64_t i) const {
    const A g = load(dy, i);
    acc.a += double(g);
    acc.b += double(g * xhat(n, c, i));
  }
};

constexpr int kTile = 32, kTileRows = 8, kChanThreads = 256;
// Blocks of a one-block-a-channel launch at most (S > 1), the rest taken grid-stride: C of 2^32
// or more wrapped in unsigned(C) (a few channels reduced, the others' partials never written), and
// past 2^31 - 1 was an invalid grid.
constexpr int64_t kChanGrid = int64_t(1) << 16;

// K splits of the batch for a shape (never from the device: same bits anywhere).
inline int64_t channel_splits(int64_t N, int64_t S) {
  if (N <= 0) return 1;
  const int64_t k = S == 1 ? (N + 255) / 256 : (N * S + 16383) / 16384;
  return std::max<int64_t>(1, std::min<int64_t>({k, N, 256}));
}

// part[k * C + c] = reduction of split k of channel c. S == 1: blocks of
// 32 channels x 8 row lanes (coalesced along C); S > 1: one block per channel.
template <class Op>
__global__ void channel_partial_kernel(Op op, int64_t N, int64_t C, int64_t S, int64_t K,
                                       typename Op::Part* __restrict__ part) {
  using V = typename Op::Acc;  // a thread's accumulator, reduced as Op::Part
  using P = typename Op::Part;
  __shared__ P sm[kChanThreads];
  const int64_t k = blockIdx.y, n0 = N * k / K, n1 = N * (k + 1) / K;
  if (S == 1) {
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t c = int64_t(blockIdx.x) * kTile + tx;
    V v = op.zero();
    if (c < C) {
      for (int64_t n = n0 + ty; n < n1; n += kTileRows) op.push(v, n, c, n * C + c);
      if (op.again(v))
        for (int64_t n = n0 + ty; n < n1; n += kTileRows) op.push_again(v, n, c, n * C + c);
    }
    sm[ty * kTile + tx] = op.finish(v);
    __syncthreads();
#pragma unroll
    for (int h = kTileRows / 2; h >= 1; h >>= 1) {
      if (ty < h) sm[ty * kTile + tx] = combine(sm[ty * kTile + tx], sm[(ty + h) * kTile + tx]);
      __syncthreads();
    }
    if (ty == 0 && c < C) part[k * C + c] = sm[tx];
    return;
  }
  // (channels past the grid's: kChanGrid; uniform per block, block_reduce's barriers end its use of sm)
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    V v = op.zero();
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t base = (n * C + c) * S;
      for (int64_t s = threadIdx.x; s < S; s += blockDim.x) op.push(v, n, c, base + s);
    }
    if (op.again(v))
      for (int64_t n = n0; n < n1; ++n) {
        const int64_t base = (n * C + c) * S;
        for (int64_t s = threadIdx.x; s < S; s += blockDim.x) op.push_again(v, n, c, base + s);
      }
    const P t = block_reduce(op.finish(v), sm, op.part_zero());
    if (threadIdx.x == 0) part[k * C + c] = t;
  }
}

// mean[c], rstd[c] and the unbiased variance var[c] (running buffers) from the same moments, in double
// and rounded once; eps is the caller's double, not rounded to A first (cpp/norm_channels.cpp's and
// torch's CPU train-mode rstd: float32 eps moved 1 in 8 rstd of a constant channel by an ulp).
template <class A>
__device__ void put_moments(const rules::Moments<double>& m, double eps, int64_t c, A* mean, A* rstd, A* var) {
  mean[c] = A(m.mean);
  rstd[c] = A(rules::rstd(m, eps));
  var[c] = A(rules::unbiased_var(m));
}

// The statistics from the K splits' moments merged in order; redo[c] = 1 where those are unusable
// (rules::stats_ok, on the values rounded to A as cpp/norm_channels.cpp's) and the channel must be
// summed again scaled, 2 where a float64 channel's merged mean needs its deviations summed again first
// (rules::remerge_needed: the threads' and splits' rounded means, kTreeRoundings + K ulps; both by
// stats_redo_kernel).
template <class A>
__global__ void stats_finalize_kernel(const rules::Moments<double>* __restrict__ part, int64_t K, int64_t C,
                                      A* __restrict__ mean, A* __restrict__ rstd, A* __restrict__ var, double eps,
                                      int* __restrict__ redo) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    rules::Moments<double> acc{0.0, 0.0, 0.0, 0.0};
    for (int64_t k = 0; k < K; ++k) acc = rules::merge(acc, part[k * C + c]);
    put_moments(acc, eps, c, mean, rstd, var);
    redo[c] = rules::remerge_needed<A>(acc, kTreeRoundings + double(K)) ? 2
              : rules::stats_ok(A(acc.mean), A(acc.m2), A(eps))         ? 0
                                                                        : 1;
  }
}

// Value j of channel c of x (N, C, S), in A: the accessor of a channel's values for the block-wide
// loops (stats_redo_kernel; group_lo_kernel's in cuda/norm_channels.cu).
template <class T, class A> struct ChannelAt {
  const T* x;
  int64_t C, S;
  __device__ A operator()(int64_t c, int64_t j) const { return A(load(x, ((j / S) * C + c) * S + j % S)); }
};

// Channel c (marked in redo) again by the whole block (call from every thread): 2, the deviations
// around the merged mean (block_moments_around), kept where those statistics are usable; else, or 1,
// scaled (norm_scaled.cuh). Thread 0 writes the statistics.
template <class A, class At>
__device__ void redo_stats(int redo, int64_t c, int64_t n, At at, A* mean, A* rstd, A* var, double eps) {
  if (redo == 2) {  // (every thread reads mean[c] before block_moments_around's barrier)
    const rules::Moments<double> m = block_moments_around(n, double(mean[c]), at);
    if (rules::stats_ok(A(m.mean), A(m.m2), A(eps))) {
      if (threadIdx.x == 0) put_moments(m, eps, c, mean, rstd, var);
      return;
    }
  }
  const auto q = block_scaled_moments<A>(n, at);
  if (threadIdx.x == 0) {
    mean[c] = q.mean;
    rstd[c] = rules::rsqrt_scaled(q.m2 / A(n), q.e, A(eps));
    var[c] = rules::unbiased_var_scaled(q, n);
  }
}

// The channels marked in redo, again by one block each (redo_stats; the check is block-uniform), and,
// where lo is given, every channel's mean low part from its statistics as written (block_mean_lo:
// group_lo_kernel's bits, a block of the same size a channel; the channels that need none pay a
// compare). The training forward and backward take lo from the saved state: one pass, no launch or
// scratch of their own.
template <class T, class A>
__global__ void __launch_bounds__(kChanThreads)
stats_redo_kernel(const T* __restrict__ x, const int* __restrict__ redo, int64_t N, int64_t C, int64_t S,
                  A* __restrict__ mean, A* __restrict__ rstd, A* __restrict__ var, double eps, A* __restrict__ lo) {
  __shared__ rules::Moments<double> sm[32];
  const int64_t n = N * S;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    const auto at = [&](int64_t i) { return ChannelAt<T, A>{x, C, S}(c, i); };
    if (redo[c]) {
      redo_stats(redo[c], c, n, at, mean, rstd, var, eps);
      __syncthreads();  // (thread 0's statistics, read by every thread below)
    }
    if (!lo) continue;
    const A l = block_mean_lo<A>(mean[c], rstd[c], n, at, sm);
    if (threadIdx.x == 0) lo[c] = l;
  }
}

// dw, db: the K splits' double sums merged in order, rounded once; means[c]: mean(dy), mean(dy x̂) over
// the m values of channel c (rules::grad_means, batch norm's dx). flags[c]: which rounded sums are not
// finite (bit 0: Σ dy, bit 1: Σ dy x̂; redone by channel_redo_kernel); flags[C + c] = 0, set later by a
// dx kernel whose channel c's dx is not finite.
template <class T, class A>
__global__ void sums_finalize_kernel(const Sum2<double>* __restrict__ part, int64_t K, int64_t C, double m,
                                     T* __restrict__ dw, T* __restrict__ db, rules::GradMeans<A>* __restrict__ means,
                                     int* __restrict__ flags) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    Sum2<double> acc{0.0, 0.0};
    for (int64_t k = 0; k < K; ++k) acc = combine(acc, part[k * C + c]);
    const A sa = A(acc.a), sb = A(acc.b);
    if (dw) store(dw, c, sb);
    if (db) store(db, c, sa);
    if (means) means[c] = rules::grad_means<A>(acc.a, acc.b, m, false);
    flags[c] = (rules::finite_(sa) ? 0 : 1) | (rules::finite_(sb) ? 0 : 2);
    flags[C + c] = 0;
  }
}

// Batch norm's dx, for the redo: γ (null: ones), rstd, dx (null: parameter sums only), the mode.
template <class T, class A> struct DxRedo {
  const T* w = nullptr;
  const A* rstd = nullptr;
  T* dx = nullptr;
  bool training = true;
};

// dy near the max (rules/norm.hpp): the channels flagged by sums_finalize_kernel or the dx kernel
// again, one block each, dy (and γ) scaled: the non-finite parameter sums, then dx (eval mode: each
// non-finite element, dx = r γ dy having no sums). Other channels return at once (block-uniform).
template <class T, class A>
__global__ void __launch_bounds__(kChanThreads)
channel_redo_kernel(GradSumOp<T, A> op, int64_t N, int64_t C, int64_t S, T* __restrict__ dw, T* __restrict__ db,
                    const int* __restrict__ flags, DxRedo<T, A> d) {
  const int64_t n = N * S;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    const int f = flags[c], fdx = d.dx ? flags[C + c] : 0;
    if (!f && !fdx) continue;
    const A wc = d.w ? A(load(d.w, c)) : A(1);
    const auto idx = [&](int64_t i) { return ((i / S) * C + c) * S + i % S; };
    const auto at = [&](int64_t i) {
      const int64_t e = idx(i);
      return rules::GradElem<A>{A(load(op.dy, e)), wc, op.xhat(i / S, c, e)};
    };
    if (f) {
      int a;
      const Sum2<A> q = block_param_sums_scaled<A>(n, at, &a);
      if (threadIdx.x == 0 && a != 0) {
        if (db && (f & 1)) store(db, c, q.a);
        if (dw && (f & 2)) store(dw, c, q.b);
      }
    }
    if (!fdx) continue;
    const A r = d.rstd[c];
    if (d.training) {
      block_dx_group_scaled<A>(n, r, false, at, [&](int64_t i, A v) { store(d.dx, idx(i), v); });
      continue;
    }
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const A dy = load(op.dy, idx(i));
      if (rules::finite_(rules::norm_dx(dy, wc, A(0), r, A(0), A(0)))) continue;
      const rules::GradScale sc = rules::grad_scale(rules::max_abs(A(0), dy), rules::max_abs(A(0), wc));
      store(d.dx, idx(i), rules::norm_dx_scaled(dy, wc, A(0), r, A(0), A(0), sc));
    }
  }
}

template <class Op>
void launch_partials(const Op& op, int64_t N, int64_t C, int64_t S, int64_t K, typename Op::Part* part,
                     cudaStream_t s) {
  if (S == 1) {
    const dim3 grid{unsigned((C + kTile - 1) / kTile), unsigned(K), 1u}, block{unsigned(kTile), unsigned(kTileRows), 1u};
    channel_partial_kernel<<<grid, block, 0, s>>>(op, N, C, S, K, part);
  } else {
    const dim3 grid{unsigned(std::min<int64_t>(C, kChanGrid)), unsigned(K), 1u};
    channel_partial_kernel<<<grid, kChanThreads, 0, s>>>(op, N, C, S, K, part);
  }
}

// mean[c], rstd[c] and var[c] (unbiased) of x over N and S; lo[c] (lo optional): their mean low parts.
template <class T, class A>
void channel_moments(const T* x, int64_t N, int64_t C, int64_t S, A* mean, A* rstd, A* var, double eps, A* lo,
                     cudaStream_t s) {
  const int64_t K = channel_splits(N, S);
  ScratchBuffer part(size_t(K * C) * sizeof(rules::Moments<double>), s);
  ScratchBuffer redo(size_t(C) * sizeof(int), s);
  launch_partials(StatsOp<T, A>{x}, N, C, S, K, part.as<rules::Moments<double>>(), s);
  stats_finalize_kernel<<<grid_for(C, 256), 256, 0, s>>>(part.as<rules::Moments<double>>(), K, C, mean, rstd, var, eps,
                                                         redo.as<int>());
  stats_redo_kernel<T, A><<<unsigned(std::min<int64_t>(C, kChanGrid)), kChanThreads, 0, s>>>(
      x, redo.as<int>(), N, C, S, mean, rstd, var, eps, lo);
}

// dw[c] = Σ dy x̂, db[c] = Σ dy (each optional), their means in `means` when given; flags (2 C ints):
// sums_finalize_kernel's.
template <class T, class A>
void channel_grad_sums(const GradSumOp<T, A>& op, int64_t N, int64_t C, int64_t S, T* dw, T* db,
                       rules::GradMeans<A>* means, int* flags, cudaStream_t s) {
  const int64_t K = channel_splits(N, S);
  ScratchBuffer part(size_t(K * C) * sizeof(Sum2<double>), s);
  launch_partials(op, N, C, S, K, part.as<Sum2<double>>(), s);
  sums_finalize_kernel<T, A><<<grid_for(C, 256), 256, 0, s>>>(part.as<Sum2<double>>(), K, C, double(N * S), dw, db,
                                                              means, flags);
}

// channel_redo_kernel over the C channels (after the dx kernel, if any).
template <class T, class A>
void channel_redo(const GradSumOp<T, A>& op, int64_t N, int64_t C, int64_t S, T* dw, T* db, const int* flags,
                  const DxRedo<T, A>& d, cudaStream_t s) {
  if (C > 0)
    channel_redo_kernel<T, A><<<unsigned(std::min<int64_t>(C, kChanGrid)), kChanThreads, 0, s>>>(
        op, N, C, S, dw, db, flags, d);
}

}  // namespace normgpu
}  // namespace optkern
