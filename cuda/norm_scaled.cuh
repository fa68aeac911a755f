// The scaled fallback of rules/norm.hpp on the GPU: a row or channel whose
// direct statistics overflowed, underflowed below a tiny eps or met a
// non-finite value is summed again by the whole block, scaled by 2^-e with
// 2^e <= max|x| < 2^(e+1). The same formulas as cpp/norm_cpu.hpp's fallback, summed
// in double in the block's fixed tree order (deterministic). Rare, so written for clarity:
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

// Σ at(i)² = ssq · 4^e (NaN for a row holding NaN or ±inf): each scaled square rounded to A, summed in
// double, ssq rounded to A (the CPU's scaled_sum_squares adds blocks of eight float32 squares in
// float32 first: not the same bits).
template <class A, class At> __device__ rules::ScaledSq<A> block_scaled_sum_squares(int64_t n, At at) {
  __shared__ Sum2<double> ss[32];
  const A amax = block_max_abs<A>(n, at);
  if (!rules::finite_(amax)) return {A(NAN), 0};
  if (amax == A(0)) return {A(0), 0};
  const int e = rules::scale_exp(amax);
  Sum2<double> q{0.0, 0.0};
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const A v = rules::scale2(at(i), -e);
    q.a += double(v * v);
  }
  return {A(block_reduce(q, ss, Sum2<double>{0.0, 0.0}).a), e};
}

// Mean and M2 = m2 · 4^e: the CPU's corrected two-pass on x · 2^-e (the mean in double, M2 around it
// rounded to A, corrected; for a float64 A where the sum's rounding can matter, rules::refine_mean,
// the deviations summed too: 7.77e200 + {0..3} ulps had M2 off by its own size), its sums in double.
// (Per-thread sums in A, around the first element, rounded a long row's additions alike: ~10-20
// ulps of y for 65536 values ±c near the overflow.)
template <class A, class At> __device__ rules::ScaledMoments<A> block_scaled_moments(int64_t n, At at) {
  __shared__ Sum2<double> ss[32];
  const A amax = block_max_abs<A>(n, at);
  if (!rules::finite_(amax)) return {A(NAN), A(NAN), 0};
  if (amax == A(0)) return {A(0), A(0), 0};
  const int e = rules::scale_exp(amax);
  const auto xs = [&](int64_t i) { return rules::scale2(at(i), -e); };
  Sum2<double> s{0.0, 0.0};
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s.a += double(xs(i));
  const double sum = block_reduce(s, ss, Sum2<double>{0.0, 0.0}).a;
  const A m = A(sum / double(n));
  Sum2<double> q{0.0, 0.0};
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const A d = xs(i) - m;
    q.a += double(d * d);
  }
  const double q2 = block_reduce(q, ss, Sum2<double>{0.0, 0.0}).a;
  Sum2<double> d{0.0, 0.0};
  if (rules::refine_mean<A>(q2, double(n), m)) {  // (block-uniform; never for a float A)
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) d.a += double(xs(i) - m);
    d = block_reduce(d, ss, Sum2<double>{0.0, 0.0});
  }
  const rules::Moments<double> mo = rules::two_pass_moments<A>(double(n), sum, m, q2, d.a);
  return {A(rules::scale2(mo.mean, e)), A(mo.m2), e};
}

// ---- dy near the max: the redo of rules/norm.hpp, by the whole block (the CPU's: cpp/norm_cpu.hpp) ----
// `at(i)` gives element i's rules::GradElem<A> (dy, γ, x̂), i in [0, n); `put(i, v)` writes its dx.

// dx of a group (mean(g), mean(g x̂) over its n elements; rms: no mean(g)) with dy, γ scaled.
template <class A, class At, class Put> __device__ void block_dx_group_scaled(int64_t n, A r, bool rms, At at, Put put) {
  __shared__ Sum2<A> ss[32];
  const A mdy = block_max_abs<A>(n, [&](int64_t i) { return at(i).dy; });
  const A mw = block_max_abs<A>(n, [&](int64_t i) { return at(i).w; });
  const rules::GradScale sc = rules::grad_scale(mdy, mw);
  if (!rules::scales(sc)) return;  // (block-uniform)
  Sum2<A> q{A(0), A(0)};
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const rules::GradElem<A> e = at(i);
    const A g = rules::scaled_g(e.dy, e.w, sc);
    q.a += g, q.b += g * e.xhat;
  }
  q = block_reduce(q, ss, Sum2<A>{A(0), A(0)});
  const A mg = rms ? A(0) : q.a / A(n), mgx = q.b / A(n);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const rules::GradElem<A> e = at(i);
    put(i, rules::norm_dx_scaled(e.dy, e.w, e.xhat, r, mg, mgx, sc));
  }
}

// Σ dy x̂ (.b) and Σ dy (.a) of one parameter entry again with dy 2^-a, scaled back (a = 0: not
// redone, the result unused), returned to every thread. The terms in double, scaled back and rounded
// once, as the plain sums (GradSumOp) and the CPU's param_sums_scaled (in A a float32 channel's sums
// were ulps off the exact ones).
template <class A, class At> __device__ Sum2<A> block_param_sums_scaled(int64_t n, At at, int* a_out) {
  __shared__ Sum2<double> ss[32];
  const A mdy = block_max_abs<A>(n, [&](int64_t i) { return at(i).dy; });
  const int a = rules::grad_scale(mdy, A(0)).a;
  *a_out = a;
  if (a == 0) return {A(0), A(0)};
  Sum2<double> q{0.0, 0.0};
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const rules::GradElem<A> e = at(i);
    const A d = rules::scale2(e.dy, -a);
    q.a += double(d), q.b += double(d * e.xhat);
  }
  q = block_reduce(q, ss, Sum2<double>{0.0, 0.0});
  return {A(rules::param_unscaled(q.a, a)), A(rules::param_unscaled(q.b, a))};
}

}  // namespace normgpu
}  // namespace optkern
