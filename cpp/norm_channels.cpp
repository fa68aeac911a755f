// Batch normalization on the CPU: x is (N, C, S) (S = 1 for (N, C) input),
// statistics per channel over N and S. The batch is cut into fixed blocks of
// rows (from the shape only); each (block, channel) is reduced by one thread
// in a fixed order and blocks are merged in order, so the result is bitwise
// identical for any thread count. With S = 1 a block is reduced for all
// channels at once, vectorized across channels. (The kernels: norm_channels_kernels.hpp.)
#include <pybind11/pybind11.h>

#include <algorithm>
#include <optional>
#include <type_traits>
#include <vector>

#include "py_arrays.hpp"
#include "norm_channels_kernels.hpp"
#include "norm_cpu.hpp"
#include "optkern/norm_layout.hpp"
#include "optkern/rules/norm.hpp"
#include "optkern/signatures.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace {
namespace py = pybind11;
using namespace normcpu;

Shape shape_of(int64_t size, int64_t N, int64_t C, int64_t S) {
  check_channel_layout(size, N, C, S);
  return {N, C, S};
}

// The blocks' moments merged in order, the channels side by side: each channel's merges are a
// dependent chain (latency-bound one channel at a time: 0.8 ms of a 2 ms float32 (4096, 512) forward).
template <class T> std::vector<rules::Moments<double>> merged_blocks(const std::vector<rules::Moments<double>>& part, const Shape& sh) {
  std::vector<rules::Moments<double>> merged(size_t(sh.C), rules::Moments<double>{0.0, 0.0, 0.0, 0.0});
  for (int64_t k = 0; k < sh.nblk(); ++k)
    for (int64_t c = 0; c < sh.C; ++c)
      merged[size_t(c)] = rules::merge<sizeof(T) == sizeof(double)>(merged[size_t(c)], part[size_t(k * sh.C + c)]);
  return merged;
}

}  // namespace

template <class T> std::vector<rules::Moments<double>> normcpu::channel_moments(const T* x, int64_t N, int64_t C, int64_t S) {
  const Shape sh{N, C, S};
  std::vector<rules::Moments<double>> part(size_t(sh.nblk() * C));
  run(StatsKernel<T>{x, part.data(), sh}, tasks(sh), sh.size());
  return merged_blocks<T>(part, sh);
}
template std::vector<rules::Moments<double>> normcpu::channel_moments(const float*, int64_t, int64_t, int64_t);
template std::vector<rules::Moments<double>> normcpu::channel_moments(const double*, int64_t, int64_t, int64_t);

namespace {

// The channels' merged moments of x stored as S (uint16_t: half, bf16 says which; in float32).
template <class S>
std::vector<rules::Moments<double>> moments_of(const S* x, const Shape& sh, bool bf16) {
  using T = half::compute_t<S>;
  if constexpr (std::is_same_v<S, T>) {
    return normcpu::channel_moments(x, sh.N, sh.C, sh.S);
  } else {
    std::vector<rules::Moments<double>> part(size_t(sh.nblk() * sh.C));
    const HalfIO h{x, nullptr, nullptr, bf16};
    run(StatsKernel<T, HalfIn>{{}, part.data(), sh}, &h, tasks(sh), sh.size());
    return merged_blocks<T>(part, sh);
  }
}

// The channels' mean low parts (rules::mean_lo) for batch statistics (mean, rstd) of x: empty where
// no channel needs one (|mean| rstd <= 1: no pass over x), else lo[c], 0 for the channels that do
// not. From the moments again, as the row norms' backward takes theirs (cpp/norm_rows.cpp): the
// statistics kernel's, so the bits of channel_stats' mean. Float32 (64, 3, 17) of 1e7 + 0.5 + N(0, 1)
// normalized around the rounded mean alone had y 0.51 and dx 0.06 off the float64 normalization of
// the same values (tests/test_hunt47k_bn_mean_lo.py).
template <class S>
std::vector<half::compute_t<S>> channel_lows(const S* x, const half::compute_t<S>* mean,
                                             const half::compute_t<S>* rstd, const Shape& sh, bool bf16) {
  if (sh.size() == 0) return {};
  return normcpu::channel_lows(mean, rstd, sh.C, [&] { return moments_of(x, sh, bf16); });
}

// The low parts the training kernels use (null where no channel needs one, as channel_lows' empty
// result): `given`, channel_stats' (handed over by the forward's saved state: no pass over x for
// its moments again), else channel_lows' (own: their storage). Both are rules::mean_lo of the same
// merged moments and statistics: the same bits.
template <class S>
const half::compute_t<S>* batch_lows(const S* x, const half::compute_t<S>* mean, const half::compute_t<S>* rstd,
                                     const half::compute_t<S>* given, const Shape& sh, bool bf16,
                                     std::vector<half::compute_t<S>>& own) {
  if (!given) own = channel_lows(x, mean, rstd, sh, bf16);
  else if (sh.size() > 0 && lows_needed(mean, rstd, sh.C)) return given;
  return own.empty() ? nullptr : own.data();
}

// mean, rstd = 1 / sqrt(biased var + eps) and the unbiased variance (for the
// running buffer) of each channel, all from the same merged moments, and optionally (lo_h) the means'
// low parts (rules::mean_lo, 0 where not needed) from them too. S: the storage type of x
// (uint16_t: half, bf16 says which; statistics in float32).
template <class S>
void stats_impl(HostArgs& args, py::handle x_h, py::handle mean_h, py::handle rstd_h, py::handle var_h,
                py::handle lo_h, const Shape& sh, double eps, bool bf16) {
  using T = half::compute_t<S>;
  const py::dtype dt = py::dtype::of<T>();
  const S* x = args.get<S>(x_h, "x", sh.size(), false);
  T* mean = args.get<T>(mean_h, "mean", dt, sh.C, true);
  T* rstd = args.get<T>(rstd_h, "rstd", dt, sh.C, true);
  T* var = args.get<T>(var_h, "var", dt, sh.C, true);
  T* lo = args.opt<T>(lo_h, "lo", dt, sh.C, true);
  args.check_overlap();
  if (sh.N == 0) throw py::value_error("x: batch statistics need at least one sample per channel");
  py::gil_scoped_release nogil;
  const std::vector<rules::Moments<double>> merged = moments_of(x, sh, bf16);
  for (int64_t c = 0; c < sh.C; ++c) {
    const rules::Moments<double>& acc = merged[size_t(c)];
    if (rules::stats_ok(T(acc.mean), T(acc.m2), T(eps))) {
      mean[c] = T(acc.mean);
      rstd[c] = T(rules::rstd(acc, eps));
      var[c] = T(rules::unbiased_var(acc));
      continue;
    }
    // Overflow, underflow below a tiny eps or non-finite x (rules/norm.hpp): the channel again, scaled.
    const int64_t n = sh.N * sh.S;
    const auto q = scaled_moments<T>(n, [&](int64_t i) {
      const S v = x[((i / sh.S) * sh.C + c) * sh.S + i % sh.S];
      if constexpr (std::is_same_v<S, T>) return v;
      else return half::load1(v, bf16);
    });
    mean[c] = q.mean;
    rstd[c] = rules::rsqrt_scaled(q.m2 / T(n), q.e, T(eps));
    var[c] = rules::unbiased_var_scaled(q, n);
  }
  // (channel_lows' values: the same moments, the statistics as written)
  if (lo) fill_lows(merged, mean, rstd, sh.C, lo);
}

void channel_stats(py::handle x, py::handle mean, py::handle rstd, py::handle var, int64_t N, int64_t C, int64_t S,
                   double eps, py::handle lo) {
  const py::dtype dt = float_dtype<HostArrays>(x, "x", true);
  const Shape sh = shape_of(py::reinterpret_borrow<py::array>(x).size(), N, C, S);
  check_norm_eps(eps, dt.itemsize() < 8);
  HostArgs args(dt);
  if (half::is_half(dt)) stats_impl<uint16_t>(args, x, mean, rstd, var, lo, sh, eps, half::is_bf16(dt));
  else if (dt.itemsize() == 4) stats_impl<float>(args, x, mean, rstd, var, lo, sh, eps, false);
  else stats_impl<double>(args, x, mean, rstd, var, lo, sh, eps, false);
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
  const auto size = [](py::handle h) {
    return py::isinstance<py::array>(h) ? int64_t(py::reinterpret_borrow<py::array>(h).size()) : int64_t(-1);
  };
  const int64_t C = sig::running_channels(size(rm_h), size(rv_h), size(mean_h));
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
  bool training;  // (mean, rstd) are x's batch statistics: the far channels' low parts apply
  py::handle lo;  // channel_stats' low parts of them (training only), or None: computed here
};

// The rare redo of non-finite dx or parameter sums (norm_cpu.hpp's redo_channels) with half storage:
// it gathers a channel's elements across the batch, so it runs on float32 copies of that channel's
// dy, x and dx (dx as rounded: a half value rounds to itself), one channel at a time, made only for
// the channels redone (copies of the whole arrays, 12 bytes an element, were made for one bad
// channel). Each runs redo_channels as a batch of one channel (C = 1: its element i is the copies'
// i), picking it as the whole call would: S > 1, a bad task of the channel; S = 1, a non-finite dx
// of the channel in a bad row -- here after rounding, so a float16 dx past 65504 in such a row is
// redone too (scaled, to about the same value, which rounds to inf again): the one difference from
// the float32 call on float32 copies.
void redo_half(const DxKernel<float, HalfIn, HalfOut>& k, const HalfIO& h, float* dw, float* db) {
  const Shape& sh = k.sh;
  const int64_t N = sh.N, C = sh.C, S = sh.S, m = N * S, tasks = S == 1 ? N : N * C;
  std::vector<char> bad(size_t(C), 0);
  for (int64_t t = 0; t < tasks; ++t) {
    if (!k.bad[t]) continue;
    if (S > 1) bad[size_t(t % C)] = 1;
    else
      for (int64_t c = 0; c < C; ++c) bad[size_t(c)] |= !rules::finite_(half::load1(h.out[t * C + c], h.bf16));
  }
  std::vector<float> f;    // one channel's dy, x, dx
  std::vector<uint16_t> r;  // its dx rounded back
  std::vector<char> pick;  // the one-channel batch's bad tasks
  for (int64_t c = 0; c < C; ++c) {
    const bool sums = (dw && !rules::finite_(dw[c])) || (db && !rules::finite_(db[c]));
    if (!bad[size_t(c)] && !sums) continue;
    f.resize(size_t(3 * m));
    const auto at = [&](int64_t i) { return ((i / S) * C + c) * S + i % S; };  // (ChannelGrads::at)
    for (int64_t i = 0; i < m; ++i) {
      const int64_t e = at(i);
      f[size_t(i)] = half::load1(h.dy[e], h.bf16);
      f[size_t(m + i)] = half::load1(h.x[e], h.bf16);
      f[size_t(2 * m + i)] = half::load1(h.out[e], h.bf16);
    }
    // S = 1: the rows as the kernel flagged them (their dx of this channel tested again there);
    // S > 1: one task flagged where the channel is bad
    pick.assign(size_t(N), 0);
    if (S == 1) std::copy(k.bad, k.bad + N, pick.begin());
    else if (N > 0) pick[0] = bad[size_t(c)];
    redo_channels(ChannelGrads<float>{f.data(), f.data() + m, k.mean + c, k.rstd + c, k.w + c, f.data() + 2 * m, N, 1,
                                      S, k.training, k.lo ? k.lo + c : nullptr},
                  pick.data(), dw ? dw + c : nullptr, db ? db + c : nullptr);
    if (!bad[size_t(c)]) continue;  // (only the sums redone: dx as it was)
    r.resize(size_t(m));
    half::from_float(f.data() + 2 * m, r.data(), m, h.bf16);
    for (int64_t i = 0; i < m; ++i) h.out[at(i)] = r[size_t(i)];
  }
}

template <class S>
void forward_impl(HostArgs& args, py::handle x_h, py::handle mean_h, py::handle rstd_h, py::handle w_h,
                  py::handle b_h, py::handle y_h, const Shape& sh, const RunningArgs& ra, bool bf16) {
  using T = half::compute_t<S>;
  constexpr bool kHalf = !std::is_same_v<S, T>;
  const py::dtype dt = py::dtype::of<T>();
  std::conditional_t<kHalf, ApplyKernel<T, HalfIn, HalfOut>, ApplyKernel<T>> k{};
  const S* x = args.get<S>(x_h, "x", sh.size(), false);
  k.mean = args.get<T>(mean_h, "mean", dt, sh.C, false);
  k.rstd = args.get<T>(rstd_h, "rstd", dt, sh.C, false);
  const S* w = args.opt<S>(w_h, "weight", sh.C, false);
  const S* b = args.opt<S>(b_h, "bias", sh.C, false);
  S* y = args.get<S>(y_h, "out", sh.size(), true);
  const T* var = args.opt<T>(ra.var, "var", dt, sh.C, false);
  T* rm = args.opt<T>(ra.mean, "running_mean", dt, sh.C, true);
  T* rv = args.opt<T>(ra.rvar, "running_var", dt, sh.C, true);
  const T* given = args.opt<T>(ra.lo, "lo", dt, sh.C, false);
  k.sh = sh;
  args.check_overlap();
  const half::Params<S> wp(w, sh.C, T(1), bf16), bp(b, sh.C, T(0), bf16);
  k.w = wp.p, k.b = bp.p;
  py::gil_scoped_release nogil;
  std::vector<T> own;
  const T* lop = ra.training ? batch_lows(x, k.mean, k.rstd, given, sh, bf16, own) : nullptr;
  const ChannelScaling<T> scaling(k.mean, k.rstd, sh.S == 1 ? sh.C : 0, lop);
  k.ns = scaling.data();
  k.lo = lop;
  // eval (fixed statistics): torch's folded form (rules::eval_fold)
  std::optional<EvalFolds<T>> folds;
  if (!ra.training) folds.emplace(k.mean, k.rstd, k.w, k.b, sh.C);
  k.fold = folds ? &*folds : nullptr;
  const int64_t n = sh.S == 1 ? sh.N : sh.N * sh.C;
  if constexpr (kHalf) {  // (the kernel writes a buffer: no streamed stores)
    const HalfIO h{x, nullptr, y, bf16};
    run(k, &h, n, 2 * sh.size());
  } else {
    k.x = x, k.y = y, k.stream = stream_output(sh.size(), sizeof(T));
    run(k, n, 2 * sh.size());  // x in, y out
  }
  if (rm) update_running(rm, rv, k.mean, var, sh.C, ra.momentum);
}

void channel_norm_forward(py::handle x, py::handle mean, py::handle rstd, py::object w, py::object b, py::handle y,
                          int64_t N, int64_t C, int64_t S, py::handle var, py::handle running_mean,
                          py::handle running_var, double momentum, checks::Flag training_arg, py::handle lo) {
  const bool training = checks::flag(training_arg, "training");
  const py::dtype dt = float_dtype<HostArrays>(x, "x", true);
  const Shape sh = shape_of(py::reinterpret_borrow<py::array>(x).size(), N, C, S);
  sig::check_running(var, running_mean, running_var, momentum);
  sig::check_lo(lo, training);
  const RunningArgs ra{var, running_mean, running_var, momentum, training, lo};
  HostArgs args(dt);
  if (half::is_half(dt)) forward_impl<uint16_t>(args, x, mean, rstd, w, b, y, sh, ra, half::is_bf16(dt));
  else if (dt.itemsize() == 4) forward_impl<float>(args, x, mean, rstd, w, b, y, sh, ra, false);
  else forward_impl<double>(args, x, mean, rstd, w, b, y, sh, ra, false);
}

template <class S>
void backward_impl(HostArgs& args, py::handle dy_h, py::handle x_h, py::handle mean_h, py::handle rstd_h,
                   py::handle w_h, py::handle dx_h, py::handle dw_h, py::handle db_h, py::handle lo_h, const Shape& sh,
                   bool training, bool bf16) {
  using T = half::compute_t<S>;
  constexpr bool kHalf = !std::is_same_v<S, T>;
  const py::dtype dt = py::dtype::of<T>();
  std::conditional_t<kHalf, DxKernel<T, HalfIn, HalfOut>, DxKernel<T>> k{};
  std::conditional_t<kHalf, GradSumKernel<T, HalfIn>, GradSumKernel<T>> gk{};
  const S* dy = args.get<S>(dy_h, "dy", sh.size(), false);
  const S* x = args.get<S>(x_h, "x", sh.size(), false);
  k.mean = args.get<T>(mean_h, "mean", dt, sh.C, false);
  k.rstd = args.get<T>(rstd_h, "rstd", dt, sh.C, false);
  const S* w = args.opt<S>(w_h, "weight", sh.C, false);
  S* dx = args.get<S>(dx_h, "dx", sh.size(), true);
  S* dws = args.opt<S>(dw_h, "dweight", sh.C, true);
  S* dbs = args.opt<S>(db_h, "dbias", sh.C, true);
  const T* given = args.opt<T>(lo_h, "lo", dt, sh.C, false);
  k.sh = sh;
  args.check_overlap();
  const half::Params<S> wp(w, sh.C, T(1), bf16);
  k.w = wp.p;
  const int64_t nblk = sh.nblk(), C = sh.C, size = sh.size();
  // Half storage: dγ, dβ in float32 (C values), rounded once at the end.
  std::vector<T> dwv(kHalf && dws ? size_t(C) : 0), dbv(kHalf && dbs ? size_t(C) : 0);
  T* const dw = kHalf ? (dws ? dwv.data() : nullptr) : reinterpret_cast<T*>(dws);
  T* const db = kHalf ? (dbs ? dbv.data() : nullptr) : reinterpret_cast<T*>(dbs);
  const HalfIO h{reinterpret_cast<const uint16_t*>(x), reinterpret_cast<const uint16_t*>(dy),
                 reinterpret_cast<uint16_t*>(dx), bf16};
  py::gil_scoped_release nogil;
  std::vector<double> sdy(size_t(nblk * C), 0.0), sdyx(size_t(nblk * C), 0.0);  // (GradSumKernel: in double)
  std::vector<T> mg(size_t(C), T(0)), mgx(size_t(C), T(0));
  // (the forward's low parts: batch statistics only, an eval x̂ is around the running mean as given)
  std::vector<T> own;
  k.lo = training ? batch_lows(x, k.mean, k.rstd, given, sh, bf16, own) : nullptr;
  const ChannelScaling<T> scaling(k.mean, k.rstd, sh.S == 1 ? C : 0, k.lo);
  k.ns = scaling.data();
  gk.mean = k.mean, gk.rstd = k.rstd, gk.sdy = sdy.data(), gk.sdyx = sdyx.data(), gk.sh = sh, gk.ns = k.ns;
  gk.lo = k.lo;
  if constexpr (kHalf) {
    run(gk, &h, tasks(sh), 2 * size);
  } else {
    k.dy = dy, k.x = x, k.dx = dx, k.stream = stream_output(size, sizeof(T));
    gk.dy = dy, gk.x = x;
    run(gk, tasks(sh), 2 * size);
  }
  for (int64_t c = 0; c < C; ++c) {
    double sa = 0, sb = 0;
    for (int64_t blk = 0; blk < nblk; ++blk) sa += sdy[size_t(blk * C + c)], sb += sdyx[size_t(blk * C + c)];
    if (db) db[c] = T(sa);  // (rounded once)
    if (dw) dw[c] = T(sb);
    const auto gm = rules::grad_means<T>(sa, sb, double(sh.N * sh.S), false);  // (the GPU's too)
    mg[size_t(c)] = training ? k.w[c] * gm.g : T(0);
    mgx[size_t(c)] = training ? k.w[c] * gm.gx : T(0);
  }
  k.mg = mg.data();
  k.mgx = mgx.data();
  k.training = training;
  std::vector<char> bad(size_t(sh.S == 1 ? sh.N : sh.N * sh.C));
  k.bad = bad.data();
  const int64_t nt = sh.S == 1 ? sh.N : sh.N * sh.C;
  if constexpr (kHalf) {
    run(k, &h, nt, 3 * size);
    redo_half(k, h, dw, db);
  } else {
    run(k, nt, 3 * size);
    redo_channels(ChannelGrads<T>{k.dy, k.x, k.mean, k.rstd, k.w, k.dx, sh.N, C, sh.S, training, k.lo}, k.bad, dw, db);
  }
  if constexpr (kHalf) {
    if (dw) half::from_float(dw, dws, C, bf16);
    if (db) half::from_float(db, dbs, C, bf16);
  }
}

void channel_norm_backward(py::handle dy, py::handle x, py::handle mean, py::handle rstd, py::object w,
                           py::handle dx, py::object dw, py::object db, int64_t N, int64_t C, int64_t S,
                           checks::Flag training_arg, py::handle lo) {
  const bool training = checks::flag(training_arg, "training");
  const py::dtype dt = float_dtype<HostArrays>(x, "x", true);
  const Shape sh = shape_of(py::reinterpret_borrow<py::array>(x).size(), N, C, S);
  sig::check_lo(lo, training);
  HostArgs args(dt);
  if (half::is_half(dt))
    backward_impl<uint16_t>(args, dy, x, mean, rstd, w, dx, dw, db, lo, sh, training, half::is_bf16(dt));
  else if (dt.itemsize() == 4) backward_impl<float>(args, dy, x, mean, rstd, w, dx, dw, db, lo, sh, training, false);
  else backward_impl<double>(args, dy, x, mean, rstd, w, dx, dw, db, lo, sh, training, false);
}

}  // namespace

void register_norm_channels(py::module_& m) {
  sig::norm_channels(m, &channel_stats, &channel_norm_forward, &channel_norm_backward, &running_stats);
}

}  // namespace optkern
