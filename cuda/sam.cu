// SAM's ascent and return passes on CuPy arrays (same contract as cpp/sam.cpp): ||g|| by the
// deterministic two-stage reduction into out[0], then one fused pass that reads the norm on the
// device (no host synchronization): backup = w, w += rho g / (||g|| + eps) (ASAM: rho w^2 g /
// (||w g|| + eps)); and w = backup. A sum of squares out of double's range is taken again scaled
// (two more reductions, decided on the device: they return at once for a gradient in range).
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "list_call.cuh"
#include "optkern/rules/second_order.hpp"
#include "optkern/signatures_second_order.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace {

// Lists (params, grads, backups): sum of g^2 (ASAM: of (w g)^2).
template <class T> struct GradSquares {
  static constexpr int kDepth = 3;
  static constexpr bool kMax = false;
  bool adaptive;
  __device__ double operator()(const T* v) const {
    // (the param is loaded only where ASAM needs it: plain SAM's norm reads g alone)
    const double x = adaptive ? rules::sam_norm_term(double(v[0]), double(v[1]), true)
                              : rules::sam_norm_term(0.0, double(v[1]), false);
    return x * x;
  }
};

// The norm's device scratch: st[0] the direct sum of squares, st[1] max |term| (rescan only), st[2]
// the scaled sum of squares (0: not rescanned; rules::sam_scale_rescanned reads it).
struct SumOut {
  static constexpr bool kMax = false;
  double* out;
  double* st;
  __device__ void operator()(double s) const { st[0] = s, st[2] = 0.0, out[0] = sqrt(s); }
};

// Out of double's range (rules::lanczos_sumsq_direct, as on the CPU: cpp/sam.cpp) the terms are
// summed again scaled by 2^-e (rules::sam_norm_term_scaled); otherwise both passes return at once.
template <class T> __device__ bool in_range(const double* st) { return rules::lanczos_sumsq_direct<T>(st[0]); }
__device__ inline bool no_scale(double amax) { return !rules::finite_(amax) || amax == 0.0; }
// The rescan's exponent e from st[1] (ASAM's max is taken 2^kSamUp larger where st[0] underflowed).
__device__ inline int rescan_exp(const double* st, bool adaptive) {
  return rules::sam_rescan_exp(st[1], adaptive, rules::sam_rescan_up(st[0]));
}

template <class T> struct TermMax {  // 1: max |term| (NaN wins)
  static constexpr int kDepth = 3;
  static constexpr bool kMax = true;
  bool adaptive;
  const double* st;
  __device__ bool skip() const { return in_range<T>(st); }
  __device__ double operator()(const T* v) const {  // (ASAM: rules::sam_norm_term_max)
    const bool up = rules::sam_rescan_up(st[0]);
    const double x = adaptive ? rules::sam_norm_term_max(double(v[0]), double(v[1]), true, up)
                              : rules::sam_norm_term_max(0.0, double(v[1]), false, up);
    return x < 0.0 ? -x : x;
  }
};
template <class T> struct MaxOut {
  static constexpr bool kMax = true;
  double* st;
  __device__ void operator()(double m) const {
    if (!in_range<T>(st)) st[1] = m;
  }
};

template <class T> struct ScaledSquares {  // 2: sum of (term 2^-e)^2, e the exponent of max |term|
  static constexpr int kDepth = 3;
  static constexpr bool kMax = false;
  bool adaptive;
  const double* st;
  __device__ bool skip() const { return in_range<T>(st) || no_scale(st[1]); }
  __device__ double operator()(const T* v) const {
    const int e = rescan_exp(st, adaptive);
    const double x = rules::sam_norm_term_scaled(adaptive ? double(v[0]) : 0.0, double(v[1]), adaptive, e);
    return x * x;
  }
};
template <class T> struct ScaledOut {  // a zero, NaN or Inf max keeps the direct norm
  static constexpr bool kMax = false;
  bool adaptive;
  double* out;
  double* st;
  __device__ void operator()(double ssq) const {
    if (!in_range<T>(st) && !no_scale(st[1])) out[0] = rules::norm_scaled(ssq, rescan_exp(st, adaptive)), st[2] = ssq;
  }
};

template <class T> struct PerturbOp {
  rules::SamScale<T> s;
  bool adaptive;
  __device__ void operator()(T* v) const {
    const T scale = s.m;
    if (scale == T(0)) v[2] = v[0];  // rho = 0: w stays bitwise
    else if (s.k != 0) rules::sam_perturb_split(v[0], v[1], v[2], s, adaptive);  // (rules::sam_scale_split)
    else if (adaptive) rules::sam_perturb_adaptive_checked(v[0], v[1], v[2], scale);
    else rules::sam_perturb(v[0], v[1], v[2], scale);
  }
};

// The scale is read from the norm (and the rescan's st) on the device when each block starts.
template <class T> struct Perturb {
  static constexpr int kDepth = 3;
  static constexpr unsigned kWritten = 1u | 4u;  // params, backups
  double rho, eps;
  const double* norm;
  const double* st;
  bool adaptive;
  __device__ PerturbOp<T> load() const {
    const double ssq = st[2];  // (st[1] is set where ssq is: the rescan's max)
    const int e = ssq > 0.0 ? rescan_exp(st, adaptive) : 0;
    return {rules::sam_scale_rescanned<T>(rho, norm[0], eps, ssq, e), adaptive};
  }
};

template <class T> struct CopyOp {
  __device__ void operator()(T* v) const { v[0] = v[1]; }
};
template <class T> struct Copy {
  static constexpr int kDepth = 2;
  static constexpr unsigned kWritten = 1u;
  __device__ CopyOp<T> load() const { return {}; }
};

py::object sam_perturb(py::handle params, py::handle grads, py::handle backups, const checks::Real& rho_arg,
                       const checks::Real& eps_arg, py::handle out, checks::Flag adaptive_arg) {
  const bool adaptive = checks::flag(adaptive_arg, "adaptive");
  const std::pair<double, double> given = sig::sam_scalars(rho_arg, eps_arg);
  const double rho = given.first, eps = given.second;
  ListCall a(params, "params", true);
  a.require(grads, "grads", false);
  a.require(backups, "backups", true);
  double* o = a.add_buffer(out, "out", 1, true);
  a.ready(/*always_launch=*/true);
  const ScratchBuffer scratch(3 * sizeof(double), a.stream(), a.device());  // (the norm's st, above)
  double* st = scratch.as<double>();
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    a.reduce<T>(GradSquares<T>{adaptive}, SumOut{o, st});
    a.reduce<T>(TermMax<T>{adaptive, st}, MaxOut<T>{st});
    a.reduce<T>(ScaledSquares<T>{adaptive, st}, ScaledOut<T>{adaptive, o, st});
    a.apply<T>(Perturb<T>{rho, eps, o, st, adaptive});
  });
  return py::none();  // the norm stays in out[0] on the device
}

void sam_restore(py::handle params, py::handle backups) {
  ListCall a(params, "params", true);
  a.require(backups, "backups", false);
  if (!a.ready()) return;
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    a.apply<T>(Copy<T>{});
  });
}

}  // namespace

void register_sam(py::module_& m) { sig::sam(m, &sam_perturb, &sam_restore); }

}  // namespace optkern
