// Batch normalization on the CPU: x is (N, C, S) (S = 1 for (N, C) input),
// statistics per channel over N and S. The batch is cut into fixed blocks of
// rows (from the shape only); each (block, channel) is reduced by one thread
// in a fixed order and blocks are merged in order, so the result is bitwise
// identical for any thread count. With S = 1 a block is reduced for all
// channels at once, vectorized across channels. (The kernels: norm_channels_kernels.hpp.)
#include <pybind11/pybind11.h>

#include <algorithm>
#include <vector>

#include "half_stage.hpp"
#include "py_arrays.hpp"
#include "norm_channels_kernels.hpp"
#include "norm_cpu.hpp"
#include "optkern/rules/norm.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace {
namespace py = pybind11;
using namespace normcpu;

Shape shape_of(int64_t size, int64_t N, int64_t C, int64_t S) {
  if (N < 0 || C < 1 || S < 1) throw py::value_error("shape: N >= 0, C >= 1, S >= 1 required");
  if (N * C * S != size)
    throw py::value_error("x: expected N * C * S = " + std::to_string(N * C * S) + " elements, got " +
                          std::to_string(size));
  return {N, C, S};
}

// mean, rstd = 1 / sqrt(biased var + eps) and the unbiased variance (for the
// running buffer) of each channel, all from the same merged moments.
template <class T>
void stats_impl(py::handle x_h, py::handle mean_h, py::handle rstd_h, py::handle var_h, const Shape& sh, double eps) {
  HostArgs args(py::dtype::of<T>());
  const T* x = args.get<T>(x_h, "x", sh.size(), false);
  T* mean = args.get<T>(mean_h, "mean", sh.C, true);
  T* rstd = args.get<T>(rstd_h, "rstd", sh.C, true);
  T* var = args.get<T>(var_h, "var", sh.C, true);
  args.check_overlap();
  if (sh.N == 0) throw py::value_error("x: batch statistics need at least one sample per channel");
  py::gil_scoped_release nogil;
  std::vector<rules::Moments<double>> part(size_t(sh.nblk() * sh.C));
  run(StatsKernel<T>{x, part.data(), sh}, tasks(sh), sh.size());
  for (int64_t c = 0; c < sh.C; ++c) {
    rules::Moments<double> acc{0.0, 0.0, 0.0};
    for (int64_t k = 0; k < sh.nblk(); ++k) acc = rules::merge(acc, part[size_t(k * sh.C + c)]);
    if (rules::stats_ok(T(acc.mean), T(acc.m2), T(eps))) {
      mean[c] = T(acc.mean);
      rstd[c] = T(rules::rstd(acc, eps));
      var[c] = T(rules::unbiased_var(acc));
      continue;
    }
    // Overflow, underflow below a tiny eps or non-finite x (rules/norm.hpp): the channel again, scaled.
    const int64_t n = sh.N * sh.S;
    const auto q = scaled_moments<T>(n, [&](int64_t i) { return x[((i / sh.S) * sh.C + c) * sh.S + i % sh.S]; });
    mean[c] = q.mean;
    rstd[c] = rules::rsqrt_scaled(q.m2 / T(n), q.e, T(eps));
    var[c] = rules::unbiased_var_scaled(q, n);
  }
}

void channel_stats(py::handle x, py::handle mean, py::handle rstd, py::handle var, int64_t N, int64_t C, int64_t S,
                   double eps) {
  const py::dtype dt = float_dtype<HostArrays>(x, "x", true);
  const Shape sh = shape_of(py::reinterpret_borrow<py::array>(x).size(), N, C, S);
  if (!(eps > 0.0)) throw py::value_error("eps: must be > 0, got " + std::to_string(eps));
  if (half::is_half(dt)) {  // the float32 kernel on a float32 copy of x (half_stage.hpp)
    half::HalfStage st(dt);
    const py::object xf = st.in(x, "x", sh.size());
    st.stat(mean, "mean", sh.C, true), st.stat(rstd, "rstd", sh.C, true), st.stat(var, "var", sh.C, true);
    st.check();
    stats_impl<float>(xf, mean, rstd, var, sh, eps);
    return;
  }
  if (dt.itemsize() == 4) stats_impl<float>(x, mean, rstd, var, sh, eps);
  else stats_impl<double>(x, mean, rstd, var, sh, eps);
}

// running <- (1 - momentum) running + momentum batch, for the C means and variances.
template <class T> void update_running(T* rm, T* rv, const T* mean, const T* var, int64_t C, double momentum) {
  for (int64_t c = 0; c < C; ++c) {
    rm[c] = rules::running_stat(rm[c], mean[c], momentum);
    rv[c] = rules::running_stat(rv[c], var[c], momentum);
  }
}

template <class T> void running_impl(py::handle rm_h, py::handle rv_h, py::handle mean_h, py::handle var_h, double m) {
  HostArgs args(py::dtype::of<T>());
  const int64_t C = int64_t(py::reinterpret_borrow<py::array>(mean_h).size());
  const T* mean = args.get<T>(mean_h, "mean", C, false);
  const T* var = args.get<T>(var_h, "var", C, false);
  T* rm = args.get<T>(rm_h, "running_mean", C, true);
  T* rv = args.get<T>(rv_h, "running_var", C, true);
  args.check_overlap();
  update_running(rm, rv, mean, var, C, m);
}

void running_stats(py::handle running_mean, py::handle running_var, py::handle mean, py::handle var,
                   double momentum) {
  const py::dtype dt = float_dtype<HostArrays>(mean, "mean");
  sig::check_running(var, running_mean, running_var, momentum);
  if (dt.itemsize() == 4) running_impl<float>(running_mean, running_var, mean, var, momentum);
  else running_impl<double>(running_mean, running_var, mean, var, momentum);
}

// Optional running buffers, updated from the batch statistics after the normalization.
struct RunningArgs {
  py::handle var, mean, rvar;
  double momentum;
};

template <class T>
void forward_impl(py::handle x_h, py::handle mean_h, py::handle rstd_h, py::handle w_h, py::handle b_h,
                  py::handle y_h, const Shape& sh, const RunningArgs& ra) {
  HostArgs args(py::dtype::of<T>());
  ApplyKernel<T> k{};
  k.x = args.get<T>(x_h, "x", sh.size(), false);
  k.mean = args.get<T>(mean_h, "mean", sh.C, false);
  k.rstd = args.get<T>(rstd_h, "rstd", sh.C, false);
  k.w = args.opt<T>(w_h, "weight", sh.C, false);
  k.b = args.opt<T>(b_h, "bias", sh.C, false);
  k.y = args.get<T>(y_h, "out", sh.size(), true);
  const T* var = args.opt<T>(ra.var, "var", sh.C, false);
  T* rm = args.opt<T>(ra.mean, "running_mean", sh.C, true);
  T* rv = args.opt<T>(ra.rvar, "running_var", sh.C, true);
  k.sh = sh;
  k.stream = stream_output(sh.size(), sizeof(T));
  args.check_overlap();
  const std::vector<T> ones(size_t(sh.C), T(1)), zeros(size_t(sh.C), T(0));
  if (!k.w) k.w = ones.data();
  if (!k.b) k.b = zeros.data();
  py::gil_scoped_release nogil;
  const ChannelScaling<T> scaling(k.mean, k.rstd, sh.S == 1 ? sh.C : 0);
  k.ns = scaling.data();
  run(k, sh.S == 1 ? sh.N : sh.N * sh.C, 2 * sh.size());  // x in, y out
  if (rm) update_running(rm, rv, k.mean, var, sh.C, ra.momentum);
}

void channel_norm_forward(py::handle x, py::handle mean, py::handle rstd, py::object w, py::object b, py::handle y,
                          int64_t N, int64_t C, int64_t S, py::handle var, py::handle running_mean,
                          py::handle running_var, double momentum) {
  const py::dtype dt = float_dtype<HostArrays>(x, "x", true);
  const Shape sh = shape_of(py::reinterpret_borrow<py::array>(x).size(), N, C, S);
  sig::check_running(var, running_mean, running_var, momentum);
  const RunningArgs ra{var, running_mean, running_var, momentum};
  if (half::is_half(dt)) {  // float32 kernels on float32 copies; statistics stay float32 (half_stage.hpp)
    half::HalfStage st(dt);
    const py::object xf = st.in(x, "x", sh.size()), wf = st.in(w, "weight", sh.C), bf = st.in(b, "bias", sh.C);
    st.stat(mean, "mean", sh.C, false), st.stat(rstd, "rstd", sh.C, false);
    const py::object yf = st.out(y, "out", sh.size());
    st.stat(var, "var", sh.C, false);
    st.stat(running_mean, "running_mean", sh.C, true), st.stat(running_var, "running_var", sh.C, true);
    st.check();
    forward_impl<float>(xf, mean, rstd, wf, bf, yf, sh, ra);
    st.finish();
    return;
  }
  if (dt.itemsize() == 4) forward_impl<float>(x, mean, rstd, w, b, y, sh, ra);
  else forward_impl<double>(x, mean, rstd, w, b, y, sh, ra);
}

template <class T>
void backward_impl(py::handle dy_h, py::handle x_h, py::handle mean_h, py::handle rstd_h, py::handle w_h,
                   py::handle dx_h, py::handle dw_h, py::handle db_h, const Shape& sh, bool training) {
  HostArgs args(py::dtype::of<T>());
  DxKernel<T> k{};
  k.dy = args.get<T>(dy_h, "dy", sh.size(), false);
  k.x = args.get<T>(x_h, "x", sh.size(), false);
  k.mean = args.get<T>(mean_h, "mean", sh.C, false);
  k.rstd = args.get<T>(rstd_h, "rstd", sh.C, false);
  k.w = args.opt<T>(w_h, "weight", sh.C, false);
  k.dx = args.get<T>(dx_h, "dx", sh.size(), true);
  T* dw = args.opt<T>(dw_h, "dweight", sh.C, true);
  T* db = args.opt<T>(db_h, "dbias", sh.C, true);
  k.sh = sh;
  k.stream = stream_output(sh.size(), sizeof(T));
  args.check_overlap();
  const std::vector<T> ones(size_t(sh.C), T(1));
  if (!k.w) k.w = ones.data();
  py::gil_scoped_release nogil;
  const int64_t nblk = sh.nblk(), C = sh.C;
  std::vector<T> sdy(size_t(nblk * C), T(0)), sdyx(size_t(nblk * C), T(0)), mg(size_t(C), T(0)), mgx(size_t(C), T(0));
  const ChannelScaling<T> scaling(k.mean, k.rstd, sh.S == 1 ? C : 0);
  k.ns = scaling.data();
  run(GradSumKernel<T>{k.dy, k.x, k.mean, k.rstd, sdy.data(), sdyx.data(), sh, k.ns}, tasks(sh), 2 * sh.size());
  const T M = T(sh.N * sh.S);
  for (int64_t c = 0; c < C; ++c) {
    T a = 0, b = 0;
    for (int64_t blk = 0; blk < nblk; ++blk) a += sdy[size_t(blk * C + c)], b += sdyx[size_t(blk * C + c)];
    if (db) db[c] = a;
    if (dw) dw[c] = b;
    mg[size_t(c)] = training ? k.w[c] * a / M : T(0);
    mgx[size_t(c)] = training ? k.w[c] * b / M : T(0);
  }
  k.mg = mg.data();
  k.mgx = mgx.data();
  k.training = training;
  std::vector<char> bad(size_t(sh.S == 1 ? sh.N : sh.N * sh.C));
  k.bad = bad.data();
  run(k, sh.S == 1 ? sh.N : sh.N * sh.C, 3 * sh.size());
  redo_channels(ChannelGrads<T>{k.dy, k.x, k.mean, k.rstd, k.w, k.dx, sh.N, C, sh.S, training}, k.bad, dw, db);
}

void channel_norm_backward(py::handle dy, py::handle x, py::handle mean, py::handle rstd, py::object w,
                           py::handle dx, py::object dw, py::object db, int64_t N, int64_t C, int64_t S,
                           bool training) {
  const py::dtype dt = float_dtype<HostArrays>(x, "x", true);
  const Shape sh = shape_of(py::reinterpret_borrow<py::array>(x).size(), N, C, S);
  if (half::is_half(dt)) {  // float32 kernels on float32 copies (half_stage.hpp)
    half::HalfStage st(dt);
    const py::object dyf = st.in(dy, "dy", sh.size()), xf = st.in(x, "x", sh.size());
    st.stat(mean, "mean", sh.C, false), st.stat(rstd, "rstd", sh.C, false);
    const py::object wf = st.in(w, "weight", sh.C), dxf = st.out(dx, "dx", sh.size());
    const py::object dwf = st.out(dw, "dweight", sh.C), dbf = st.out(db, "dbias", sh.C);
    st.check();
    backward_impl<float>(dyf, xf, mean, rstd, wf, dxf, dwf, dbf, sh, training);
    st.finish();
    return;
  }
  if (dt.itemsize() == 4) backward_impl<float>(dy, x, mean, rstd, w, dx, dw, db, sh, training);
  else backward_impl<double>(dy, x, mean, rstd, w, dx, dw, db, sh, training);
}

}  // namespace

void register_norm_channels(py::module_& m) {
  sig::norm_channels(m, &channel_stats, &channel_norm_forward, &channel_norm_backward, &running_stats);
}

}  // namespace optkern
