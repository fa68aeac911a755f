// Batch normalization on the GPU, same entry points as cpp/norm_channels.cpp:
// statistics and gradient sums per channel (norm_channels.cuh), then one
// elementwise pass for y or dx.
#include <optional>

#include "norm_channels.cuh"
#include "norm_common.cuh"
#include "optkern/norm_layout.hpp"
#include "optkern/signatures.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace {
using namespace normgpu;

// lo: the channels' mean low parts (null in eval mode: x̂ around the running mean as given). Eval
// (training false): torch's folded alpha x + beta where rules::eval_fold_used (the
// CPU's EvalFolds), formed per element here (memory-bound: the few flops cost nothing).
template <class T, class A>
__global__ void channel_apply_kernel(const T* __restrict__ x, const A* __restrict__ mean, const A* __restrict__ rstd,
                                     const A* __restrict__ lo, const T* __restrict__ w, const T* __restrict__ b,
                                     T* __restrict__ y, int64_t n, int64_t C, int64_t S, bool training) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (S == 1 ? i : i / S) % C;
    const A wc = w ? A(load(w, c)) : A(1), bc = b ? A(load(b, c)) : A(0);
    if (!training) {
      const auto f = rules::eval_fold(mean[c], rstd[c], wc, bc);
      if (rules::eval_fold_used(mean[c], rstd[c], f)) {
        store(y, i, rules::eval_apply(A(load(x, i)), f.alpha, f.beta));
        continue;
      }
    }
    store(y, i, rules::affine(rules::normalize_safe(A(load(x, i)), mean[c], lo ? lo[c] : A(0), rstd[c]), wc, bc));
  }
}

template <class T, class A>
__global__ void channel_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x, const A* __restrict__ mean,
                                  const A* __restrict__ rstd, const A* __restrict__ lo, const T* __restrict__ w,
                                  const rules::GradMeans<A>* __restrict__ means, T* __restrict__ dx, int64_t n,
                                  int64_t C, int64_t S, bool training, int* __restrict__ bad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (S == 1 ? i : i / S) % C;
    const A wc = w ? A(load(w, c)) : A(1);
    const A mg = training ? wc * means[c].g : A(0), mgx = training ? wc * means[c].gx : A(0);
    // eval: x̂ not formed (the CPU's DxKernel::eval): a NaN or overflowing x̂ times the zero means gave NaN
    const A xh = training ? rules::normalize_safe(A(load(x, i)), mean[c], lo ? lo[c] : A(0), rstd[c]) : A(0);
    const A v = rules::norm_dx(A(load(dy, i)), wc, xh, rstd[c], mg, mgx);
    store(dx, i, v);
    if (!rules::finite_(v)) bad[c] = 1;  // (redone: channel_redo_kernel; a race of equal stores)
  }
}

constexpr int kThreads = 256;

// The channels' mean low parts (rules::mean_lo) for batch statistics (mean, rstd) of x: a block a
// channel, its moments again only where it is needed (the CPU's channel_lows). Float32 (64, 3, 17) of
// 1e7 + 0.5 + N(0, 1) normalized around the rounded mean alone had y 0.51 and dx 0.06 off the
// float64 normalization of the same values (tests/test_cuda_hunt47k_bn_mean_lo.py).
// `given`: channel_stats' (stats_redo_kernel's, the same bits), handed over by the forward's saved
// state, used as they are; else group_lo_kernel's over the channels, on stream s, into `buf` (C values of
// A, allocated here). Null where not training or empty.
template <class T, class A>
const A* channel_lows(const T* x, const A* mean, const A* rstd, const A* given, int64_t N, int64_t C, int64_t S,
                      bool training, std::optional<ScratchBuffer>& buf, cudaStream_t s) {
  if (!training || N * C * S == 0) return nullptr;
  if (given) return given;
  buf.emplace(size_t(C) * sizeof(A), s);
  group_lo_kernel<kChanThreads, A><<<unsigned(std::min<int64_t>(C, kChanGrid)), kChanThreads, 0, s>>>(
      ChannelAt<T, A>{x, C, S}, mean, rstd, C, N * S, buf->as<A>());
  return buf->as<A>();
}

void channel_stats(py::handle x, py::handle mean, py::handle rstd, py::handle var, int64_t N, int64_t C, int64_t S,
                   double eps, py::handle lo) {
  const DType dt = float_dtype<DeviceArrays>(x, "x", true), st = stat_dtype(dt);
  check_channel_layout(device_size(x), N, C, S);
  check_norm_eps(eps, st != DType::f64);
  DeviceArgs a;
  const char* xp = a.get(x, "x", dt, N * C * S, false);
  char* mp = a.get(mean, "mean", st, C, true);
  char* rp = a.get(rstd, "rstd", st, C, true);
  char* vp = a.get(var, "var", st, C, true);
  char* lp = a.opt(lo, "lo", st, C, true);
  a.check_overlap();
  if (N == 0) throw py::value_error("x: batch statistics need at least one sample per channel");
  require_current_device(a.device, "x");
  const cudaStream_t s = current_stream();
  dispatch(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    using A = typename Compute<T>::type;
    channel_moments<T, A>(reinterpret_cast<const T*>(xp), N, C, S, reinterpret_cast<A*>(mp),
                          reinterpret_cast<A*>(rp), reinterpret_cast<A*>(vp), eps, reinterpret_cast<A*>(lp), s);
  });
  check_launch("channel_stats");
}

// running[c] <- (1 - momentum) running[c] + momentum batch[c], mean and variance.
template <class A>
__global__ void running_stats_kernel(const A* __restrict__ mean, const A* __restrict__ var, A* __restrict__ rm,
                                     A* __restrict__ rv, double momentum, int64_t C) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    rm[c] = rules::running_stat(rm[c], mean[c], momentum);
    rv[c] = rules::running_stat(rv[c], var[c], momentum);
  }
}

// The kernel above on statistics of dtype st (float32 or float64), on stream s.
void launch_running(DType st, const char* mp, const char* vp, char* rmp, char* rvp, double momentum, int64_t C,
                    cudaStream_t s) {
  const auto launch = [&](auto* tag) {
    using A = std::remove_pointer_t<decltype(tag)>;
    running_stats_kernel<A><<<grid_for(C, 256), 256, 0, s>>>(reinterpret_cast<const A*>(mp),
                                                            reinterpret_cast<const A*>(vp), reinterpret_cast<A*>(rmp),
                                                            reinterpret_cast<A*>(rvp), momentum, C);
  };
  if (st == DType::f64) launch(static_cast<double*>(nullptr));
  else launch(static_cast<float*>(nullptr));
}

void running_stats(py::handle running_mean, py::handle running_var, py::handle mean, py::handle var,
                   double momentum) {
  const DType st = float_dtype<DeviceArrays>(mean, "mean");
  sig::check_running(var, running_mean, running_var, momentum);
  // (a size of -1 for None: its check below names it)
  const auto size = [](py::handle h) { return h.is_none() ? int64_t(-1) : device_size(h); };
  const int64_t C = sig::running_channels(size(running_mean), size(running_var), device_size(mean));
  DeviceArgs a;
  const char* mp = a.get(mean, "mean", st, C, false);
  const char* vp = a.get(var, "var", st, C, false);
  char* rmp = a.get(running_mean, "running_mean", st, C, true);
  char* rvp = a.get(running_var, "running_var", st, C, true);
  a.check_overlap();
  if (C == 0) return;
  require_current_device(a.device, "running_mean");
  launch_running(st, mp, vp, rmp, rvp, momentum, C, current_stream());
  check_launch("running_stats_");
}

void channel_norm_forward(py::handle x, py::handle mean, py::handle rstd, py::object w, py::object b, py::handle y,
                          int64_t N, int64_t C, int64_t S, py::handle var, py::handle running_mean,
                          py::handle running_var, double momentum, checks::Flag training_arg, py::handle lo) {
  const bool training = checks::flag(training_arg, "training");
  const DType dt = float_dtype<DeviceArrays>(x, "x", true), st = stat_dtype(dt);
  check_channel_layout(device_size(x), N, C, S);
  sig::check_running(var, running_mean, running_var, momentum);
  sig::check_lo(lo, training);
  DeviceArgs a;
  const int64_t n = N * C * S;
  const char* xp = a.get(x, "x", dt, n, false);
  const char* mp = a.get(mean, "mean", st, C, false);
  const char* rp = a.get(rstd, "rstd", st, C, false);
  const char* wp = a.opt(w, "weight", dt, C, false);
  const char* bp = a.opt(b, "bias", dt, C, false);
  char* yp = a.get(y, "out", dt, n, true);
  const char* vp = a.opt(var, "var", st, C, false);
  char* rmp = a.opt(running_mean, "running_mean", st, C, true);
  char* rvp = a.opt(running_var, "running_var", st, C, true);
  const char* lp = a.opt(lo, "lo", st, C, false);
  a.check_overlap();
  require_current_device(a.device, "x");
  const cudaStream_t s = current_stream();
  if (rmp) launch_running(st, mp, vp, rmp, rvp, momentum, C, s);
  if (n == 0) {
    check_launch("channel_norm_forward");
    return;
  }
  dispatch(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    using A = typename Compute<T>::type;
    const T* tx = reinterpret_cast<const T*>(xp);
    const A* tm = reinterpret_cast<const A*>(mp);
    const A* tr = reinterpret_cast<const A*>(rp);
    std::optional<ScratchBuffer> buf;
    const A* tlo = channel_lows(tx, tm, tr, reinterpret_cast<const A*>(lp), N, C, S, training, buf, s);
    channel_apply_kernel<T, A><<<grid_for(n, kThreads), kThreads, 0, s>>>(
        tx, tm, tr, tlo, reinterpret_cast<const T*>(wp),
        reinterpret_cast<const T*>(bp), reinterpret_cast<T*>(yp), n, C, S, training);
  });
  check_launch("channel_norm_forward");
}

void channel_norm_backward(py::handle dy, py::handle x, py::handle mean, py::handle rstd, py::object w,
                           py::handle dx, py::object dw, py::object db, int64_t N, int64_t C, int64_t S,
                           checks::Flag training_arg, py::handle lo) {
  const bool training = checks::flag(training_arg, "training");
  const DType dt = float_dtype<DeviceArrays>(x, "x", true), st = stat_dtype(dt);
  check_channel_layout(device_size(x), N, C, S);
  sig::check_lo(lo, training);
  DeviceArgs a;
  const int64_t n = N * C * S;
  const char* dyp = a.get(dy, "dy", dt, n, false);
  const char* xp = a.get(x, "x", dt, n, false);
  const char* mp = a.get(mean, "mean", st, C, false);
  const char* rp = a.get(rstd, "rstd", st, C, false);
  const char* wp = a.opt(w, "weight", dt, C, false);
  char* dxp = a.get(dx, "dx", dt, n, true);
  char* dwp = a.opt(dw, "dweight", dt, C, true);
  char* dbp = a.opt(db, "dbias", dt, C, true);
  const char* lp = a.opt(lo, "lo", st, C, false);
  a.check_overlap();
  require_current_device(a.device, "dy");
  const cudaStream_t s = current_stream();
  dispatch(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    using A = typename Compute<T>::type;
    const T* tdy = reinterpret_cast<const T*>(dyp);
    const T* tx = reinterpret_cast<const T*>(xp);
    const A* tm = reinterpret_cast<const A*>(mp);
    const A* tr = reinterpret_cast<const A*>(rp);
    using Means = rules::GradMeans<A>;
    ScratchBuffer means(size_t(C) * sizeof(Means), s), flags(size_t(2 * C) * sizeof(int), s);
    std::optional<ScratchBuffer> buf;
    // (the forward's low parts: batch statistics only, an eval x̂ is around the running mean as given)
    const GradSumOp<T, A> op{tdy, tx, tm, tr, 1, 1, false,
                             channel_lows(tx, tm, tr, reinterpret_cast<const A*>(lp), N, C, S, training, buf, s)};
    channel_grad_sums(op, N, C, S, reinterpret_cast<T*>(dwp), reinterpret_cast<T*>(dbp), means.as<Means>(),
                      flags.as<int>(), s);
    if (n > 0)
      channel_dx_kernel<T, A><<<grid_for(n, kThreads), kThreads, 0, s>>>(
          tdy, tx, tm, tr, op.lo, reinterpret_cast<const T*>(wp), means.as<Means>(), reinterpret_cast<T*>(dxp), n, C, S,
          training, flags.as<int>() + C);
    // dy near the max (rules/norm.hpp): channels whose sums or dx came out non-finite, again scaled
    DxRedo<T, A> d;
    d.w = reinterpret_cast<const T*>(wp), d.rstd = tr, d.dx = reinterpret_cast<T*>(dxp), d.training = training;
    channel_redo(op, N, C, S, reinterpret_cast<T*>(dwp), reinterpret_cast<T*>(dbp), flags.as<int>(), d, s);
  });
  check_launch("channel_norm_backward");
}

}  // namespace

void register_norm_channels(py::module_& m) {
  sig::norm_channels(m, &channel_stats, &channel_norm_forward, &channel_norm_backward, &running_stats);
}

}  // namespace optkern
