// The device kernels of L-BFGS's passes (cuda/lbfgs.cu checks the arguments and launches them):
// the new pair, the history dots with block partials summed in order, the direction, the
// parameter moves and the gradient statistics. Included by lbfgs.cu only.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "block_tree.cuh"
#include "multi_tensor.cuh"
#include "optkern/rules/second_order.hpp"

namespace optkern {
namespace lbfgsgpu {
namespace rs = rules;

constexpr int kThreads = 256;
constexpr int kRows = 4;  // history rows per block of the dots kernel (5 kRows accumulators per thread)
constexpr int kTableRows = 120;  // history rows per launch: their table is 3.9 KB of kernel parameters

// History rows first .. first + count - 1 (and their direction coefficients), passed by value with
// the launch: no host-to-device copy from pageable memory (which may synchronize with the stream)
// and nothing for a captured graph to read from freed host memory. Longer histories take several
// launches.
template <class T> struct RowTable {
  const T* s[kTableRows];
  const T* y[kTableRows];
  double cs[kTableRows];  // direction only
  double cy[kTableRows];
  int64_t first;
  int count;
};

inline int64_t num_blocks(int64_t n, int64_t per, int64_t max_blocks) {
  const int64_t b = (n + per - 1) / per;
  return b < 1 ? 1 : (b > max_blocks ? max_blocks : b);
}

// Fixed-tree sum (or NaN-sticky max) of one value per thread; all threads get the result.
template <bool Max> __device__ double block_reduce(double v, double* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) {
      const double a = sh[threadIdx.x], b = sh[threadIdx.x + s];
      sh[threadIdx.x] = Max ? ((b > a || b != b) ? b : a) : a + b;
    }
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();
  return r;
}

// y_new = g - prev_g, s_new = t d, prev_g = g.
template <class T>
__global__ void new_pair_kernel(T* __restrict__ sn, T* __restrict__ yn, const T* __restrict__ g, T* __restrict__ pg,
                                const T* __restrict__ d, T t, int64_t n) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x) {
    const T gj = g[j];
    yn[j] = gj - pg[j];
    sn[j] = t * d[j];
    pg[j] = gj;
  }
}

// Block (b, r) covers columns of segment b and the table's rows kRows r .. kRows r + kRows - 1;
// a row group past the table's rows (launched with the last table only) takes the new pair's own
// dots. part[q * nb + b] = the partial of dot q over segment b; k: rows in the whole history.
template <class T>
__global__ void dots_kernel(const RowTable<T> rt, const T* __restrict__ sn, const T* __restrict__ yn,
                            const T* __restrict__ g, double* __restrict__ part, int64_t n, int64_t nb, int64_t k) {
  __shared__ double sh[kThreads];
  const int64_t b = blockIdx.x;
  const auto [lo, hi] = blockgpu::block_segment(n, nb, b);
  const int r0 = int(blockIdx.y) * kRows;
  if (r0 >= rt.count) {  // the self group
    double acc[rs::kPushSelf] = {0.0, 0.0, 0.0, 0.0};
    for (int64_t j = lo + threadIdx.x; j < hi; j += kThreads) {
      const double s = sn[j], y = yn[j], gg = g[j];
      acc[rs::kYS] += y * s;
      acc[rs::kYY] += y * y;
      acc[rs::kGS] += gg * s;
      acc[rs::kGY] += gg * y;
    }
#pragma unroll
    for (int q = 0; q < rs::kPushSelf; ++q) {
      const double v = block_reduce<false>(acc[q], sh);
      if (threadIdx.x == 0) part[(rs::kPushPerRow * k + q) * nb + b] = v;
    }
    return;
  }
  const int rows = rt.count - r0 < kRows ? rt.count - r0 : kRows;
  double acc[kRows][rs::kPushPerRow] = {};
  for (int64_t j = lo + threadIdx.x; j < hi; j += kThreads) {
    const double s = sn[j], y = yn[j], gg = g[j];
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      if (i < rows) {
        const double sj = rt.s[r0 + i][j], yj = rt.y[r0 + i][j];
        acc[i][rs::kSnewYj] += s * yj;
        acc[i][rs::kYnewSj] += y * sj;
        acc[i][rs::kYnewYj] += y * yj;
        acc[i][rs::kGSj] += gg * sj;
        acc[i][rs::kGYj] += gg * yj;
      }
    }
  }
  // Unrolled with constant indices, like the loop above: an accumulator indexed at run time
  // (i < rows) made the compiler keep all of acc in local memory, the hot loop's adds included
  // (ncu on an H200: local loads and stores of 1 useful byte in 32, 51 % of DRAM bandwidth).
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    if (i >= rows) break;  // (uniform across the block: every thread takes the same block_reduce calls)
#pragma unroll
    for (int q = 0; q < rs::kPushPerRow; ++q) {
      const double v = block_reduce<false>(acc[i][q], sh);
      if (threadIdx.x == 0) part[((rt.first + r0 + i) * rs::kPushPerRow + q) * nb + b] = v;
    }
  }
}

// out[q] = sum_b part[q * nb + b] in block order (Max: NaN-sticky max for q == 1 of the direction).
__global__ void sum_parts_kernel(const double* __restrict__ part, double* __restrict__ out, int64_t Q, int64_t nb,
                                 int64_t max_row) {
  const int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (q >= Q) return;
  double s = 0.0;
  for (int64_t b = 0; b < nb; ++b) {
    const double v = part[q * nb + b];
    s = q == max_row ? ((v > s || v != v) ? v : s) : s + v;
  }
  out[q] = s;
}

// d = g_scale g + sum_j cy_j Y_j + cs_j S_j (accumulated in T) over the table's rows: the first
// table starts from g_scale g, later ones from d (stored in T between launches: the same bits as
// one launch); the last (Finish) writes g.d and max |d| per block to part.
template <class T, bool Start, bool Finish>
__global__ void direction_kernel(const RowTable<T> rt, const T* __restrict__ g, double g_scale, T* __restrict__ d,
                                 double* __restrict__ part, int64_t n, int64_t nb) {
  __shared__ double sh[kThreads];
  const int64_t b = blockIdx.x;
  const auto [lo, hi] = blockgpu::block_segment(n, nb, b);
  double gd = 0.0, m = 0.0;
  for (int64_t j = lo + threadIdx.x; j < hi; j += kThreads) {
    // in T, in the CPU's order: the same bits
    T acc = Start ? rs::direction_start(T(g_scale), g[j]) : d[j];
    for (int i = 0; i < rt.count; ++i) acc = rs::direction_add(acc, T(rt.cy[i]), rt.y[i][j], T(rt.cs[i]), rt.s[i][j]);
    const T v = acc;
    d[j] = v;
    if (Finish) {
      gd += double(g[j]) * double(v);
      m = rs::abs_max_step(m, double(v));  // (the CPU's NaN bits)
    }
  }
  if (!Finish) return;
  gd = block_reduce<false>(gd, sh);
  m = block_reduce<true>(m, sh);
  if (threadIdx.x == 0) {
    part[b] = gd;
    part[nb + b] = m;
  }
}

// p = x + t d (Save: x = p first) for every param, one multi-tensor launch (multi_tensor.cuh)
// over the params and their slices of the flat x and d.
template <class T, bool Save> struct MoveOp {
  static constexpr int kDepth = 3;                         // p, x, d
  static constexpr unsigned kWritten = Save ? 3u : 1u;     // p, and x when saving
  T t;
  __device__ MoveOp load() const { return *this; }
  __device__ void operator()(T* v) const {
    if constexpr (Save) {
      const T p = v[0];
      v[1] = p;
      v[0] = rs::move(p, v[2], t);
    } else {
      v[0] = rs::move(v[1], v[2], t);
    }
  }
};

// The last move of a step (no evaluation follows, so no copy of p is kept): p = p + t d.
template <class T> struct MoveInPlaceOp {
  static constexpr int kDepth = 2;  // p, d
  static constexpr unsigned kWritten = 1u;
  T t;
  __device__ MoveInPlaceOp load() const { return *this; }
  __device__ void operator()(T* v) const { v[0] = rs::move(v[0], v[1], t); }
};

// part: max |g| and sum |g| per block.
template <class T>
__global__ void stats_kernel(const T* __restrict__ g, double* __restrict__ part, int64_t n, int64_t nb) {
  __shared__ double sh[kThreads];
  const int64_t b = blockIdx.x;
  const auto [lo, hi] = blockgpu::block_segment(n, nb, b);
  double m = 0.0, s = 0.0;
  for (int64_t j = lo + threadIdx.x; j < hi; j += kThreads) {
    const double a = fabs(double(g[j]));
    m = rs::abs_max_step(m, double(g[j]));  // (the CPU's NaN bits)
    s += a;
  }
  m = block_reduce<true>(m, sh);
  s = block_reduce<false>(s, sh);
  if (threadIdx.x == 0) {
    part[b] = m;
    part[nb + b] = s;
  }
}

}  // namespace lbfgsgpu
}  // namespace optkern
