// The scaled fallback of rules/norm.hpp on the GPU: a row or channel whose
// direct statistics overflowed, underflowed below a tiny eps or met a
// non-finite value is summed again by the whole block, scaled by 2^-e with
// 2^e <= max|x| < 2^(e+1). The same sums as cpp/norm_cpu.hpp's fallback, in
// the block's fixed tree order (deterministic). Rare, so written for clarity:
// max, then one (RMS) or two (shifted mean, M2) scaled passes.
//
// Call from every thread of a 1-D block with a block-uniform condition (they
// synchronize); `at(i)` reads element i in [0, n) in the compute type A.
#pragma once
#include "norm_reduce.cuh"

namespace optkern {
namespace normgpu {

template <class A> struct MaxAbs { A v; };

// rules::max_abs keeps a NaN once seen, so the block's max is NaN if any element is.
template <class A> __device__ __forceinline__ MaxAbs<A> combine(const MaxAbs<A>& x, const MaxAbs<A>& y) {
  return {rules::max_abs(x.v, y.v)};
}
template <class A> __device__ __forceinline__ MaxAbs<A> shfl_down(const MaxAbs<A>& v, int off) {
  return {__shfl_down_sync(0xffffffffu, v.v, off)};
}

template <class A, class At> __device__ A block_max_abs(int64_t n, At at) {
  __shared__ MaxAbs<A> sm[32];
  MaxAbs<A> m{A(0)};
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m.v = rules::max_abs(m.v, at(i));
  return block_reduce(m, sm, MaxAbs<A>{A(0)}).v;
}

// Σ at(i)² = ssq · 4^e (NaN for a row holding NaN or ±inf).
template <class A, class At> __device__ rules::ScaledSq<A> block_scaled_sum_squares(int64_t n, At at) {
  __shared__ Sum2<A> ss[32];
  const A amax = block_max_abs<A>(n, at);
  if (!rules::finite_(amax)) return {A(NAN), 0};
  if (amax == A(0)) return {A(0), 0};
  const int e = rules::scale_exp(amax);
  Sum2<A> q{A(0), A(0)};
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const A v = rules::scale2(at(i), -e);
    q.a += v * v;
  }
  return {block_reduce(q, ss, Sum2<A>{A(0), A(0)}).a, e};
}

// Mean and M2 = m2 · 4^e (shifted two-pass on x · 2^-e around the first element).
template <class A, class At> __device__ rules::ScaledMoments<A> block_scaled_moments(int64_t n, At at) {
  __shared__ Sum2<A> ss[32];
  const A amax = block_max_abs<A>(n, at);
  if (!rules::finite_(amax)) return {A(NAN), A(NAN), 0};
  if (amax == A(0)) return {A(0), A(0), 0};
  const int e = rules::scale_exp(amax);
  const A k = rules::scale2(at(0), -e);
  Sum2<A> s{A(0), A(0)};
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s.a += rules::scale2(at(i), -e) - k;
  const A off = block_reduce(s, ss, Sum2<A>{A(0), A(0)}).a / A(n);
  Sum2<A> q{A(0), A(0)};
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const A d = (rules::scale2(at(i), -e) - k) - off;
    q.a += d * d;
  }
  return {rules::scale2(k + off, e), block_reduce(q, ss, Sum2<A>{A(0), A(0)}).a, e};
}

}  // namespace normgpu
}  // namespace optkern
