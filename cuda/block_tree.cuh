// Block-level helpers shared by the kernels that reduce a long vector deterministically
// (linalg.cu, regularize.cu, lbfgs_kernels.cuh): the segment of a blocked range that one
// block takes, and a fixed-tree sum over the block's threads. Both depend only on the sizes,
// never on the device or timing, so a launch gives the same bits every run.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace optkern {
namespace blockgpu {

// Block b's columns [lo, hi) of [0, n) cut into nb equal segments (the last may be shorter,
// or empty: then hi <= lo).
struct Segment {
  int64_t lo, hi;
};
__device__ __forceinline__ Segment block_segment(int64_t n, int64_t nb, int64_t b) {
  const int64_t seg = (n + nb - 1) / nb;
  const int64_t lo = b * seg;
  return {lo, lo + seg < n ? lo + seg : n};
}

// Sum of one value per thread of a Threads-thread block (Threads a power of two) in a fixed
// tree in shared memory; every thread gets the result. A caller that calls it again must
// __syncthreads() first: the next call overwrites sh[0] (the tree's result).
template <int Threads> __device__ double block_sum(double v) {
  __shared__ double sh[Threads];
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = Threads / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  return sh[0];
}

}  // namespace blockgpu
}  // namespace optkern
