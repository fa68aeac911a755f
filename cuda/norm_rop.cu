// R-operator of batch norm (training mode) and layer norm on (N, D) CuPy
// arrays, the same functions and signatures as cpp/norm_rop.cpp and the same
// per-element code (optkern/norm_rop.hpp). Group means: one block per row
// with a deterministic tree (layer norm), or one thread per column summing
// the rows in order (batch norm, and the parameter sums); then one
// grid-stride pass over the elements. Work goes to CuPy's current stream.
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "cuda_arrays.hpp"
#include "norm_common.cuh"
#include "norm_reduce.cuh"
#include "optkern/norm_rop.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace normgpu {

// K running sums reduced together (found by block_reduce through ADL).
template <class A, int K> struct SumK { A v[K]; };

template <class A, int K> __device__ __forceinline__ SumK<A, K> combine(const SumK<A, K>& x, const SumK<A, K>& y) {
  SumK<A, K> r;
#pragma unroll
  for (int k = 0; k < K; ++k) r.v[k] = x.v[k] + y.v[k];
  return r;
}
template <class A, int K> __device__ __forceinline__ SumK<A, K> shfl_down(const SumK<A, K>& x, int off) {
  SumK<A, K> r;
#pragma unroll
  for (int k = 0; k < K; ++k) r.v[k] = __shfl_down_sync(0xffffffffu, x.v[k], off);
  return r;
}

}  // namespace normgpu

namespace {
using namespace normgpu;
using namespace rop;

constexpr int kThreads = 256;

// Group sums in double, rounded to T once, as cpp/norm_rop.cpp's: in float32 a row's or column's
// thousands of additions rounded alike for terms of a common offset (a layer-norm row of 65536
// R{h} = 1000 + small: R{y} 1.6e-5 off, 40x torch's; a batch-norm column of dy = 1 + small at
// N = 16K: R{dβ} and the hvp's dh 20-100x batch_norm_backward's error).

// Groups are rows: block per row; out[k * N + n] = scale * Σ_d f(n, d)[k].
template <class Terms>
__global__ void __launch_bounds__(kThreads)
row_sums_kernel(Terms f, int64_t N, int64_t D, double scale, typename Terms::value_type* out) {
  using T = typename Terms::value_type;
  constexpr int K = Terms::K;
  __shared__ SumK<double, K> sm[32];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    SumK<double, K> acc{};
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
      T v[K];
      f(n, d, v);
#pragma unroll
      for (int k = 0; k < K; ++k) acc.v[k] += double(v[k]);
    }
    acc = block_reduce(acc, sm, SumK<double, K>{});
    if (threadIdx.x == 0)
      for (int k = 0; k < K; ++k) out[k * N + n] = T(acc.v[k] * scale);
  }
}

// Groups are columns: thread per column, rows in order; out[k * D + d].
template <class Terms>
__global__ void col_sums_kernel(Terms f, int64_t N, int64_t D, double scale, typename Terms::value_type* out) {
  using T = typename Terms::value_type;
  constexpr int K = Terms::K;
  for (int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; d < D; d += int64_t(gridDim.x) * blockDim.x) {
    double s[K] = {};
    for (int64_t n = 0; n < N; ++n) {
      T v[K];
      f(n, d, v);
#pragma unroll
      for (int k = 0; k < K; ++k) s[k] += double(v[k]);
    }
    for (int k = 0; k < K; ++k) out[k * D + d] = T(s[k] * scale);
  }
}

// Every group's mean low part (rop::Norm::lo; rules::mean_lo): a block a group, the moments again only
// where it is needed (block-uniform), as the row kernels' (block_moments at their block size):
// group_lo_kernel with GroupAt, element j of group g of h.
template <class T, int A> struct GroupAt {
  Norm<T, A> s;
  __device__ T operator()(int64_t g, int64_t j) const { return s.h[s.n_of(g, j) * s.D + s.d_of(g, j)]; }
};
template <class T, int A> void launch_lows(const Norm<T, A>& n, T* lo, cudaStream_t s) {
  group_lo_kernel<kThreads, T><<<grid_for(n.groups(), 1), kThreads, 0, s>>>(GroupAt<T, A>{n}, n.mean, n.rstd, n.groups(),
                                                                            n.size(), lo);
}

template <class T> __global__ void fill_kernel(T* p, int64_t n, T v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) p[i] = v;
}

// The elements; bad[g] = 1 for a group with a non-finite output (the groups to redo scaled).
template <class E> __global__ void apply_kernel(E e, int64_t N, int64_t D, int* bad) {
  const int64_t n = N * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / D, c = i % D;
    e(r, c);
    if (!rules::finite_(e.nonfinite(i))) bad[e.s.group(r, c)] = 1;
  }
}

// Directions near the max (optkern/norm_rop.hpp): the groups whose outputs came out non-finite (or
// m(x̂ R{h}): forward) computed again with the directions scaled, one thread a group (rare: a
// compare per group otherwise); likewise the parameter sums, one thread a column.
template <class T, int A> __global__ void fwd_redo_kernel(FwdElement<T, A> e, T* mx, const int* bad, int64_t G) {
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < G; g += int64_t(gridDim.x) * blockDim.x)
    if (bad[g] || !rules::finite_(mx[g])) fwd_group_scaled(e, mx, g);
}
template <class T, int A> __global__ void bwd_redo_kernel(BwdElement<T, A> e, const int* bad, int64_t G) {
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < G; g += int64_t(gridDim.x) * blockDim.x)
    if (bad[g]) bwd_group_scaled(e, g);
}
template <class T, int A> __global__ void param_redo_kernel(ParamTerms<T, A> p, T* params, int64_t D) {
  for (int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; d < D; d += int64_t(gridDim.x) * blockDim.x)
    if (!rules::finite_(params[d]) || !rules::finite_(params[D + d])) param_col_scaled(p, d, params, params + D);
}

template <class Terms>
void group_sums(const Terms& f, int64_t N, int64_t D, double scale, typename Terms::value_type* out, cudaStream_t s) {
  if (Terms::axis == 1) row_sums_kernel<<<grid_for(N, 1), kThreads, 0, s>>>(f, N, D, scale, out);
  else col_sums_kernel<<<grid_for(D, kThreads), kThreads, 0, s>>>(f, N, D, scale, out);
}

template <class E> void apply(const E& e, int64_t N, int64_t D, int* bad, cudaStream_t s) {
  apply_kernel<<<grid_for(N * D, kThreads), kThreads, 0, s>>>(e, N, D, bad);
}

struct Shape {
  int64_t N, D, G;
};

Shape shape_of(py::handle h, int axis) {
  if (axis != 0 && axis != 1)
    throw py::value_error("axis: must be 0 (batch norm) or 1 (layer norm), got " + std::to_string(axis));
  const auto s = DeviceArrays::shape(h);
  if (s.size() != 2) throw py::value_error("h: expected a 2-D array (N, D), got " + std::to_string(s.size()) + "-D");
  return {s[0], s[1], axis == 1 ? s[0] : s[1]};
}

template <class T, int A>
Norm<T, A> saved(DeviceArgs& a, py::handle h, py::handle mean, py::handle rstd, const Shape& S) {
  return {a.get<T>(h, "h", S.N * S.D, false), a.shaped<T>(mean, "mean", {S.G}, false),
          a.shaped<T>(rstd, "rstd", {S.G}, false), S.N, S.D};
}

template <class T, int A>
void fwd_impl(DType dt, const Shape& S, py::handle h, py::handle mean, py::handle rstd, py::handle rh, py::handle w,
              py::handle vw, py::handle vb, py::handle ry, py::handle rxhat, py::handle m_xrh) {
  DeviceArgs args(dt);
  const int64_t n = S.N * S.D;
  FwdElement<T, A> e{};
  e.s = saved<T, A>(args, h, mean, rstd, S);
  e.rh = args.shaped<T>(rh, "rh", {S.N, S.D}, false);
  e.w = args.shaped<T>(w, "weight", {S.D}, false);
  e.vw = args.shaped<T>(vw, "vweight", {S.D}, false);
  e.vb = args.shaped<T>(vb, "vbias", {S.D}, false);
  e.ry = args.shaped<T>(ry, "ry", {S.N, S.D}, true);
  e.rxhat = args.shaped<T>(rxhat, "rxhat", {S.N, S.D}, true);
  T* mx = args.shaped<T>(m_xrh, "m_xrh", {S.G}, true);
  args.check_overlap();
  require_current_device(args.device, "h");
  if (S.G == 0) return;
  cudaStream_t s = current_stream();
  if (n == 0) {  // empty groups have no mean: NaN, as on the CPU
    fill_kernel<<<grid_for(S.G, kThreads), kThreads, 0, s>>>(mx, S.G, T(NAN));
    check_launch("norm_rop_fwd");
    return;
  }
  ScratchBuffer means(sizeof(T) * size_t(2 * S.G), s), bad(sizeof(int) * size_t(S.G), s), lo(sizeof(T) * size_t(S.G), s);
  e.means = means.as<T>();
  e.s.lo = lo.as<T>();
  py::gil_scoped_release nogil;
  launch_lows(e.s, lo.as<T>(), s);
  group_sums(FwdTerms<T, A>{e.s, e.rh}, S.N, S.D, 1.0 / double(A == 1 ? S.D : S.N), means.as<T>(), s);
  check_cuda(cudaMemcpyAsync(mx, means.as<T>() + S.G, sizeof(T) * size_t(S.G), cudaMemcpyDeviceToDevice, s), "m_xrh");
  check_cuda(cudaMemsetAsync(bad.as<int>(), 0, sizeof(int) * size_t(S.G), s), "norm_rop_fwd flags");
  apply(e, S.N, S.D, bad.as<int>(), s);
  fwd_redo_kernel<<<grid_for(S.G, kThreads), kThreads, 0, s>>>(e, mx, bad.as<int>(), S.G);
  check_launch("norm_rop_fwd");
}

template <class T, int A>
void bwd_impl(DType dt, const Shape& S, py::handle h, py::handle mean, py::handle rstd, py::handle dy, py::handle rdy,
              py::handle w, py::handle vw, py::handle rxhat, py::handle m_xrh, py::handle dh, py::handle rdh,
              py::handle rdw, py::handle rdb) {
  DeviceArgs args(dt);
  const int64_t n = S.N * S.D;
  BwdElement<T, A> e{};
  e.s = saved<T, A>(args, h, mean, rstd, S);
  e.dy = args.shaped<T>(dy, "dy", {S.N, S.D}, false);
  e.rdy = args.shaped<T>(rdy, "rdy", {S.N, S.D}, false);
  e.w = args.shaped<T>(w, "weight", {S.D}, false);
  e.vw = args.shaped<T>(vw, "vweight", {S.D}, false);
  e.rxhat = args.shaped<T>(rxhat, "rxhat", {S.N, S.D}, false);
  e.m_xrh = args.shaped<T>(m_xrh, "m_xrh", {S.G}, false);
  e.dh = args.shaped<T>(dh, "dh", {S.N, S.D}, true);
  e.rdh = args.shaped<T>(rdh, "rdh", {S.N, S.D}, true);
  T* pw = args.shaped<T>(rdw, "rdweight", {S.D}, true);
  T* pb = args.shaped<T>(rdb, "rdbias", {S.D}, true);
  args.check_overlap();
  require_current_device(args.device, "h");
  if (S.D == 0) return;
  cudaStream_t s = current_stream();
  const int64_t G1 = S.G > 0 ? S.G : 1;
  ScratchBuffer means(sizeof(T) * size_t(4 * G1), s), params(sizeof(T) * size_t(2 * S.D), s);
  ScratchBuffer bad(sizeof(int) * size_t(G1), s), lo(sizeof(T) * size_t(G1), s);
  e.means = means.as<T>();
  e.s.lo = lo.as<T>();
  py::gil_scoped_release nogil;
  if (n > 0) {
    launch_lows(e.s, lo.as<T>(), s);
    group_sums(BwdTerms<T, A>{e.s, e.dy, e.rdy, e.w, e.vw, e.rxhat}, S.N, S.D, 1.0 / double(A == 1 ? S.D : S.N),
               means.as<T>(), s);
    check_cuda(cudaMemsetAsync(bad.as<int>(), 0, sizeof(int) * size_t(S.G), s), "norm_rop_bwd flags");
    apply(e, S.N, S.D, bad.as<int>(), s);
    bwd_redo_kernel<<<grid_for(S.G, kThreads), kThreads, 0, s>>>(e, bad.as<int>(), S.G);
  }
  // Column sums over N rows (zeros when N = 0).
  const ParamTerms<T, A> terms{e.s, e.dy, e.rdy, e.rxhat};
  group_sums(terms, S.N, S.D, 1.0, params.as<T>(), s);
  param_redo_kernel<<<grid_for(S.D, kThreads), kThreads, 0, s>>>(terms, params.as<T>(), S.D);
  check_cuda(cudaMemcpyAsync(pw, params.as<T>(), sizeof(T) * size_t(S.D), cudaMemcpyDeviceToDevice, s), "rdweight");
  check_cuda(cudaMemcpyAsync(pb, params.as<T>() + S.D, sizeof(T) * size_t(S.D), cudaMemcpyDeviceToDevice, s),
             "rdbias");
  check_launch("norm_rop_bwd");
}

// f(dtype, shape, T{}, axis constant) for the dtype of `h` and the axis.
template <class F> void dispatch(py::handle h, int axis, F&& f) {
  const DType dt = float_dtype<DeviceArrays>(h, "h");
  const Shape S = shape_of(h, axis);
  using A0 = std::integral_constant<int, 0>;
  using A1 = std::integral_constant<int, 1>;
  if (dt == DType::f32) axis == 0 ? f(dt, S, float{}, A0{}) : f(dt, S, float{}, A1{});
  else axis == 0 ? f(dt, S, double{}, A0{}) : f(dt, S, double{}, A1{});
}

void norm_rop_fwd(py::handle h, py::handle mean, py::handle rstd, py::handle rh, py::handle w, py::handle vw,
                  py::handle vb, py::handle ry, py::handle rxhat, py::handle m_xrh, int axis) {
  dispatch(h, axis, [&](DType dt, const Shape& S, auto t, auto a) {
    fwd_impl<decltype(t), decltype(a)::value>(dt, S, h, mean, rstd, rh, w, vw, vb, ry, rxhat, m_xrh);
  });
}

void norm_rop_bwd(py::handle h, py::handle mean, py::handle rstd, py::handle dy, py::handle rdy, py::handle w,
                  py::handle vw, py::handle rxhat, py::handle m_xrh, py::handle dh, py::handle rdh, py::handle rdw,
                  py::handle rdb, int axis) {
  dispatch(h, axis, [&](DType dt, const Shape& S, auto t, auto a) {
    bwd_impl<decltype(t), decltype(a)::value>(dt, S, h, mean, rstd, dy, rdy, w, vw, rxhat, m_xrh, dh, rdh, rdw, rdb);
  });
}

}  // namespace

void register_norm_rop(py::module_& m) {
  sig::norm_rop(m, &norm_rop_fwd, &norm_rop_bwd);
}

}  // namespace optkern
