// Row normalizations on the GPU (layer, RMS, group, instance norm), same
// layout as cpp/norm_rows.cpp: x is (R, M), M = Cg * S, row r uses affine
// entries (r % G) * Cg + j / S. One block per row: shifted sums in double per thread
// (rules::push_shifted), a deterministic tree merge (Chan) in double (float64 rows a few ulps apart:
// their deviations around its mean summed again, block_remerged_moments), the scaled re-summation
// where those statistics are unusable (norm_scaled.cuh), then the normalize/affine pass. Parameter
// gradients reduce over rows in fixed splits (norm_channels.cuh).
#include "norm_channels.cuh"
#include "norm_common.cuh"
#include "norm_reduce.cuh"
#include "norm_scaled.cuh"
#include "optkern/norm_layout.hpp"
#include "optkern/signatures.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace {
using namespace normgpu;

constexpr int kRowThreads = 256;

// The moments of row xr (M values) in double (block_moments: the forward's, and the backward's for the
// mean's low part: the same bits).
template <class A, class T>
__device__ rules::Moments<double> block_row_moments(const T* xr, int64_t M, rules::Moments<double>* sm) {
  return block_moments<A>(M, [&](int64_t j) { return load(xr, j); }, sm);
}

template <class T, class A>
__global__ void __launch_bounds__(kRowThreads)
row_forward_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                   A* __restrict__ mean, A* __restrict__ rstd, int64_t R, int64_t G, int64_t Cg, int64_t S, A eps,
                   bool rms) {
  __shared__ rules::Moments<double> sm[32];
  const int64_t M = Cg * S;
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const T* xr = x + r * M;
    T* yr = y + r * M;
    A mu = A(0), rs, lo = A(0);  // lo: the mean's low part (rules::mean_lo)
    if (rms) {
      const double q = block_sum_squares<double>(M, [&](int64_t j) { return A(load(xr, j)); });
      if (rules::stats_ok(A(0), A(q), eps)) {  // block-uniform: every thread holds the same total
        rs = A(rules::inv_rms(q, double(M), double(eps)));  // (in double, rounded once: as rstd, and the CPU's)
      } else {  // overflow, underflow below a tiny eps, or a non-finite x (rules/norm.hpp)
        const auto sq = block_scaled_sum_squares<A>(M, [&](int64_t j) { return A(load(xr, j)); });
        rs = rules::rsqrt_scaled(sq.ssq / A(M), sq.e, eps);
      }
    } else {
      const rules::Moments<double> m = block_row_moments<A>(xr, M, sm);
      if (rules::stats_ok(A(m.mean), A(m.m2), eps)) {  // (as cpp/norm_rows.cpp)
        mu = A(m.mean);
        rs = A(rules::rstd(m, double(eps)));
      } else {
        const auto q = block_scaled_moments<A>(M, [&](int64_t j) { return A(load(xr, j)); });
        mu = q.mean;
        rs = rules::rsqrt_scaled(q.m2 / A(M), q.e, eps);
      }
      if (threadIdx.x == 0) mean[r] = mu;
      lo = rules::mean_lo(m, mu, rs);
    }
    if (threadIdx.x == 0) rstd[r] = rs;
    const int64_t w0 = (r % G) * Cg;
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
      const int64_t c = w0 + (S == 1 ? j : j / S);
      const A wc = w ? A(load(w, c)) : A(1), bc = b ? A(load(b, c)) : A(0);
      store(yr, j, rules::affine(rules::normalize_safe(A(load(xr, j)), mu, lo, rs), wc, bc));
    }
  }
}

template <class T, class A>
__global__ void __launch_bounds__(kRowThreads)
row_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w, const A* __restrict__ mean,
              const A* __restrict__ rstd, T* __restrict__ dx, A* __restrict__ los, int64_t R, int64_t G, int64_t Cg,
              int64_t S) {
  __shared__ Sum2<double> ss[32];
  __shared__ rules::Moments<double> sm[32];
  // The last row whose dx came out non-finite (rows only grow: no reset; written after this row's
  // block_reduce, which every thread passes only after reading the previous row's value).
  __shared__ int64_t bad_row;
  if (threadIdx.x == 0) bad_row = -1;
  const int64_t M = Cg * S;
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const T* xr = x + r * M;
    const T* dyr = dy + r * M;
    const A mu = mean ? mean[r] : A(0), rs = rstd[r];
    // (the forward's lo: the row's moments again, only where it is needed; block-uniform. los[r], where
    // given: for the parameter sums, GradSumOp)
    const A lo = block_mean_lo<A>(mu, rs, M, [&](int64_t j) { return load(xr, j); }, sm);
    if (los && threadIdx.x == 0) los[r] = lo;
    const int64_t w0 = (r % G) * Cg;
    Sum2<double> s{0.0, 0.0};  // Σ g, Σ g x̂ in double, as the CPU's (rules::grad_means)
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
      const A g = A(load(dyr, j)) * (w ? A(load(w, w0 + (S == 1 ? j : j / S))) : A(1));
      s.a += double(g);
      s.b += double(g * rules::normalize_safe(A(load(xr, j)), mu, lo, rs));
    }
    s = block_reduce(s, ss, Sum2<double>{0.0, 0.0});
    const auto gm = rules::grad_means<A>(s.a, s.b, double(M), !mean);  // RMS norm (no mean): no mean(g) term
    const A mg = gm.g, mgx = gm.gx;
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
      const A wj = w ? A(load(w, w0 + (S == 1 ? j : j / S))) : A(1);
      const A xh = rules::normalize_safe(A(load(xr, j)), mu, lo, rs);  // (scaled where x - mu may overflow)
      const A v = rules::norm_dx(A(load(dyr, j)), wj, xh, rs, mg, mgx);
      store(dx + r * M, j, v);
      if (!rules::finite_(v)) bad_row = r;
    }
    __syncthreads();
    if (bad_row == r)  // dy near the max (rules/norm.hpp): the row again, dy and γ scaled (block-uniform)
      block_dx_group_scaled<A>(
          M, rs, !mean,
          [&](int64_t j) {
            const A wj = w ? A(load(w, w0 + (S == 1 ? j : j / S))) : A(1);
            return rules::GradElem<A>{A(load(dyr, j)), wj, rules::normalize_safe(A(load(xr, j)), mu, lo, rs)};
          },
          [&](int64_t j, A v) { store(dx + r * M, j, v); });
  }
}

unsigned row_grid(int64_t R) { return unsigned(R < (int64_t(1) << 30) ? (R > 0 ? R : 1) : (int64_t(1) << 30)); }

void row_norm_forward(py::handle x, py::object weight, py::object bias, py::handle out, py::object mean,
                      py::handle rstd, int64_t rows, int64_t groups, int64_t group_channels, int64_t spatial,
                      double eps, checks::Flag rms_arg) {
  const bool rms = checks::flag(rms_arg, "rms");
  const DType dt = float_dtype<DeviceArrays>(x, "x", true), st = stat_dtype(dt);
  const RowLayout L = row_layout(device_size(x), rows, groups, group_channels, spatial);
  check_norm_eps(eps, st != DType::f64);
  DeviceArgs a;
  const int64_t n = L.R * L.M();
  const char* xp = a.get(x, "x", dt, n, false);
  const char* wp = a.opt(weight, "weight", dt, L.W(), false);
  const char* bp = a.opt(bias, "bias", dt, L.W(), false);
  char* yp = a.get(out, "out", dt, n, true);
  char* mp = rms ? nullptr : a.get(mean, "mean", st, L.R, true);
  char* rp = a.get(rstd, rms ? "inv_rms" : "rstd", st, L.R, true);
  a.check_overlap();
  if (L.R == 0) return;
  require_current_device(a.device, "x");
  const cudaStream_t s = current_stream();
  dispatch(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    using A = typename Compute<T>::type;
    row_forward_kernel<T, A><<<row_grid(L.R), kRowThreads, 0, s>>>(
        reinterpret_cast<const T*>(xp), reinterpret_cast<const T*>(wp), reinterpret_cast<const T*>(bp),
        reinterpret_cast<T*>(yp), reinterpret_cast<A*>(mp), reinterpret_cast<A*>(rp), L.R, L.G, L.Cg, L.S, A(eps),
        rms);
  });
  check_launch("row_norm_forward");
}

void row_norm_backward(py::handle dy, py::handle x, py::object weight, py::object mean, py::handle rstd,
                       py::handle dx, py::object dweight, py::object dbias, int64_t rows, int64_t groups,
                       int64_t group_channels, int64_t spatial, checks::Flag rms_arg) {
  const bool rms = checks::flag(rms_arg, "rms");
  const DType dt = float_dtype<DeviceArrays>(x, "x", true), st = stat_dtype(dt);
  const RowLayout L = row_layout(device_size(x), rows, groups, group_channels, spatial);
  DeviceArgs a;
  const int64_t n = L.R * L.M();
  const char* dyp = a.get(dy, "dy", dt, n, false);
  const char* xp = a.get(x, "x", dt, n, false);
  const char* wp = a.opt(weight, "weight", dt, L.W(), false);
  const char* mp = rms ? nullptr : a.get(mean, "mean", st, L.R, false);
  const char* rp = a.get(rstd, rms ? "inv_rms" : "rstd", st, L.R, false);
  char* dxp = a.get(dx, "dx", dt, n, true);
  char* dwp = a.opt(dweight, "dweight", dt, L.W(), true);
  char* dbp = a.opt(dbias, "dbias", dt, L.W(), true);
  a.check_overlap();
  require_current_device(a.device, "dy");
  const cudaStream_t s = current_stream();
  dispatch(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    using A = typename Compute<T>::type;
    const T* tx = reinterpret_cast<const T*>(xp);
    const T* tdy = reinterpret_cast<const T*>(dyp);
    // (the rows' mean low parts, for the parameter sums; none without them)
    ScratchBuffer los((dwp || dbp) ? size_t(L.R) * sizeof(A) : 0, s);
    if (L.R > 0)
      row_dx_kernel<T, A><<<row_grid(L.R), kRowThreads, 0, s>>>(
          tdy, tx, reinterpret_cast<const T*>(wp), reinterpret_cast<const A*>(mp), reinterpret_cast<const A*>(rp),
          reinterpret_cast<T*>(dxp), los.as<A>(), L.R, L.G, L.Cg, L.S);
    if (dwp || dbp) {
      // (R, M) seen as (N = R / G, C = G Cg, S); row of (n, c) is n G + c / Cg.
      GradSumOp<T, A> op{tdy, tx, reinterpret_cast<const A*>(mp), reinterpret_cast<const A*>(rp), L.G, L.Cg, true,
                         los.as<A>()};
      ScratchBuffer flags(size_t(2 * L.W()) * sizeof(int), s);
      channel_grad_sums(op, L.R / L.G, L.W(), L.S, reinterpret_cast<T*>(dwp), reinterpret_cast<T*>(dbp),
                        static_cast<rules::GradMeans<A>*>(nullptr), flags.as<int>(), s);
      channel_redo(op, L.R / L.G, L.W(), L.S, reinterpret_cast<T*>(dwp), reinterpret_cast<T*>(dbp), flags.as<int>(),
                   DxRedo<T, A>{}, s);
    }
  });
  check_launch("row_norm_backward");
}

}  // namespace

void register_norm_rows(py::module_& m) {
  sig::norm_rows(m, &row_norm_forward, &row_norm_backward);
}

}  // namespace optkern
