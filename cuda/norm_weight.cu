// Weight normalization on the GPU, same entry points as cpp/norm_weight.cpp:
// one block per output row, deterministic tree sums (norm_reduce.cuh).
#include "norm_common.cuh"
#include "norm_reduce.cuh"
#include "norm_scaled.cuh"
#include "optkern/norm_layout.hpp"
#include "optkern/rules/weight_norm.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace {
using namespace normgpu;

constexpr int kThreads = 256;

template <class T, class A>
__global__ void __launch_bounds__(kThreads)
wn_forward_kernel(const T* __restrict__ v, const T* __restrict__ g, T* __restrict__ w, A* __restrict__ norm,
                  int64_t rows, int64_t M) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* vr = v + r * M;
    const double q = block_sum_squares<double>(M, [&](int64_t j) { return A(load(vr, j)); });
    A nrm;
    if (rules::stats_ok(A(0), A(q), A(0))) {  // block-uniform
      nrm = A(sqrt(q));  // (the root in double, rounded once, as cpp/norm_cpu.hpp's row_norm2; q: see block_sum_squares)
    } else {  // ‖v‖² overflowed or underflowed (rules/norm.hpp)
      const auto sq = block_scaled_sum_squares<A>(M, [&](int64_t j) { return A(load(vr, j)); });
      nrm = rules::norm_scaled(sq.ssq, sq.e);
    }
    if (threadIdx.x == 0) norm[r] = nrm;
    const A gr = load(g, r);
    // (block-uniform) as cpp/norm_weight.cpp: w from v 2^-b and ‖v‖ 2^-b, rounded several times (the
    // double sum of squares rounded to A, its square root in A, the quotient, the product)
    if (rules::is_subnormal(nrm)) {
      const A av = block_max_abs<A>(M, [&](int64_t j) { return A(load(vr, j)); });
      const int b = rules::scale_exp(av);
      const A n = sqrt(block_sum_squares<A>(M, [&](int64_t j) { return rules::scale2(A(load(vr, j)), -b); }));
      for (int64_t j = threadIdx.x; j < M; j += blockDim.x)
        store(w + r * M, j, gr * (rules::scale2(A(load(vr, j)), -b) / n));
      continue;
    }
    const A scale = rules::weight_norm_scale(gr, nrm);
    if (!rules::weight_norm_scale_ok(scale, gr, nrm)) {  // g / ‖v‖ overflowed or lost digits, v / ‖v‖ did not
      for (int64_t j = threadIdx.x; j < M; j += blockDim.x) store(w + r * M, j, gr * (A(load(vr, j)) / nrm));
      continue;
    }
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) store(w + r * M, j, scale * A(load(vr, j)));
  }
}

// Row r again with dw, v and g scaled (rare; rules/weight_norm.hpp, as cpp/norm_weight.cpp's redo), by the
// whole block (block-uniform call): a row whose dg or dv came out non-finite (dw or v near the max, a
// subnormal ‖v‖), or (small) whose s = Σ dw v underflowed. False, writing nothing, where no scaling
// applies (the plain results stand; small: also a row of dw = 0, whose plain results are exact zeros).
template <class T, class A>
__device__ bool wn_redo_row(const T* dwr, const T* vr, A g, A nrm, T* dvr, T* dg, int64_t M, bool small) {
  __shared__ Sum2<double> ss[32];
  const A adw = block_max_abs<A>(M, [&](int64_t j) { return A(load(dwr, j)); });
  if (small && adw == A(0)) return false;
  const A av = block_max_abs<A>(M, [&](int64_t j) { return A(load(vr, j)); });
  const rules::GradScale sc = rules::unit_scale(adw, av);  // (up as well as down: v 2^-b in [1, 2))
  if (!rules::weight_norm_redo_scales(sc, g)) return false;
  // s and ‖v 2^-b‖² by one thread, in double and rounded once as the CPU's block_sum (a rare row:
  // cancellation in dv where dw is near parallel to v magnified the difference a tree's order made,
  // 1e-5 relative in float32; float accumulators over a long row rounded alike, dg 1e-4 off)
  if (threadIdx.x == 0) {
    Sum2<double> t{0.0, 0.0};
    for (int64_t j = 0; j < M; ++j) {
      const A vs = rules::scale2(A(load(vr, j)), -sc.b);
      t.a += double(rules::scale2(A(load(dwr, j)), -sc.a) * vs);
      t.b += double(vs * vs);
    }
    ss[0] = t;
  }
  __syncthreads();
  const Sum2<A> q{A(ss[0].a), A(ss[0].b)};
  __syncthreads();  // (ss is reused by the next row's call)
  // (a subnormal saved ‖v‖ kept few digits: ‖v‖ 2^-b from the scaled row instead)
  const auto w = rules::is_subnormal(nrm) ? rules::weight_norm_scaled_at(q.a, A(sqrt(q.b)), g, sc)
                                          : rules::weight_norm_scaled(q.a, nrm, g, sc);
  if (threadIdx.x == 0) store(dg, 0, rules::weight_norm_dg_scaled(w));
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x)
    store(dvr, j, rules::weight_norm_dv_rescaled(A(load(dwr, j)), A(load(vr, j)), w));
  return true;
}

template <class T, class A>
__global__ void __launch_bounds__(kThreads)
wn_backward_kernel(const T* __restrict__ dw, const T* __restrict__ v, const T* __restrict__ g,
                   const A* __restrict__ norm, T* __restrict__ dv, T* __restrict__ dg, int64_t rows, int64_t M) {
  __shared__ int64_t bad_row;  // the last row with a non-finite dv (as in norm_rows.cu's row_dx_kernel)
  if (threadIdx.x == 0) bad_row = -1;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* vr = v + r * M;
    const T* dwr = dw + r * M;
    if (rules::weight_norm_single(M, A(load(dwr, 0)), A(load(vr, 0)), A(load(g, r)))) {  // (block-uniform)
      // one element: exact (rules/weight_norm.hpp); no shared memory touched, no barrier needed
      if (threadIdx.x == 0) store(dg, r, rules::weight_norm_single_dg(A(load(dwr, 0)), A(load(vr, 0))));
      if (threadIdx.x == 0) store(dv + r * M, 0, A(0));
      continue;
    }
    // s = Σ dw v summed in double, rounded once, as ‖v‖² is and as cpp/norm_weight.cpp's WnBackward
    // (the products in A as there: their overflow or underflow sends the row to the redo alike)
    const A s = block_sum<A>(M, [&](int64_t j) { return A(load(dwr, j)) * A(load(vr, j)); });
    const A nrm = norm[r];
    // (s underflowed: rules/weight_norm.hpp; block-uniform)
    if (rules::weight_norm_s_small(s, A(M)) &&
        wn_redo_row<T, A>(dwr, vr, A(load(g, r)), nrm, dv + r * M, dg + r, M, true)) {
      __syncthreads();  // (bad_row and the shared sums: the next row's)
      continue;
    }
    if (threadIdx.x == 0) store(dg, r, s / nrm);
    const A scale = rules::weight_norm_scale(A(load(g, r)), nrm), k = rules::weight_norm_k(s, nrm);
    const bool k_ok = rules::weight_norm_k_ok(k, s, nrm);  // (else s / ‖v‖² out of range: rules/weight_norm.hpp)
    const A sn = s / nrm;
    // (g / ‖v‖ or s / ‖v‖ out of the normal range, a subnormal ‖v‖: rules/weight_norm.hpp; the scaled
    // row, block-uniform; its thread 0 rewrites dg after the store above)
    if (rules::weight_norm_bwd_scaled(scale, A(load(g, r)), nrm, k_ok, sn) &&
        wn_redo_row<T, A>(dwr, vr, A(load(g, r)), nrm, dv + r * M, dg + r, M, false)) {
      __syncthreads();  // (bad_row and the shared sums: the next row's)
      continue;
    }
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
      const A dwj = load(dwr, j), vj = load(vr, j);
      const A d = k_ok ? rules::weight_norm_dv(dwj, vj, scale, k) : rules::weight_norm_dv_scaled(dwj, vj, scale, sn, nrm);
      store(dv + r * M, j, d);
      if (!rules::finite_(d)) bad_row = r;
    }
    __syncthreads();
    if (bad_row == r || !rules::finite_(sn)) wn_redo_row<T, A>(dwr, vr, A(load(g, r)), nrm, dv + r * M, dg + r, M, false);
  }
}

unsigned grid_rows(int64_t rows) { return unsigned(std::min<int64_t>(std::max<int64_t>(rows, 1), int64_t(1) << 30)); }

void weight_norm_forward(py::handle v, py::handle g, py::handle out, py::handle norm, int64_t rows, int64_t M) {
  const DType dt = float_dtype<DeviceArrays>(v, "v", true), st = stat_dtype(dt);
  check_weight_rows(device_size(v), rows, M);
  DeviceArgs a;
  const char* vp = a.get(v, "v", dt, rows * M, false);
  const char* gp = a.get(g, "g", dt, rows, false);
  char* wp = a.get(out, "out", dt, rows * M, true);
  char* np_ = a.get(norm, "norm", st, rows, true);
  a.check_overlap();
  if (rows == 0) return;
  require_current_device(a.device, "v");
  const cudaStream_t s = current_stream();
  dispatch(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    using A = typename Compute<T>::type;
    wn_forward_kernel<T, A><<<grid_rows(rows), kThreads, 0, s>>>(
        reinterpret_cast<const T*>(vp), reinterpret_cast<const T*>(gp), reinterpret_cast<T*>(wp),
        reinterpret_cast<A*>(np_), rows, M);
  });
  check_launch("weight_norm_forward");
}

void weight_norm_backward(py::handle dw, py::handle v, py::handle g, py::handle norm, py::handle dv, py::handle dg,
                          int64_t rows, int64_t M) {
  const DType dt = float_dtype<DeviceArrays>(v, "v", true), st = stat_dtype(dt);
  check_weight_rows(device_size(v), rows, M);
  DeviceArgs a;
  const char* dwp = a.get(dw, "dw", dt, rows * M, false);
  const char* vp = a.get(v, "v", dt, rows * M, false);
  const char* gp = a.get(g, "g", dt, rows, false);
  const char* np_ = a.get(norm, "norm", st, rows, false);
  char* dvp = a.get(dv, "dv", dt, rows * M, true);
  char* dgp = a.get(dg, "dg", dt, rows, true);
  a.check_overlap();
  if (rows == 0) return;
  require_current_device(a.device, "dw");
  const cudaStream_t s = current_stream();
  dispatch(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    using A = typename Compute<T>::type;
    wn_backward_kernel<T, A><<<grid_rows(rows), kThreads, 0, s>>>(
        reinterpret_cast<const T*>(dwp), reinterpret_cast<const T*>(vp), reinterpret_cast<const T*>(gp),
        reinterpret_cast<const A*>(np_), reinterpret_cast<T*>(dvp), reinterpret_cast<T*>(dgp), rows, M);
  });
  check_launch("weight_norm_backward");
}

}  // namespace

void register_norm_weight(py::module_& m) {
  sig::norm_weight(m, &weight_norm_forward, &weight_norm_backward);
}

}  // namespace optkern
