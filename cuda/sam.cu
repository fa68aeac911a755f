// SAM's ascent and return passes on CuPy arrays (same contract as cpp/sam.cpp): ||g|| by the
// deterministic two-stage reduction into out[0], then one fused pass that reads the norm on the
// device (no host synchronization): backup = w, w += rho g / (||g|| + eps) (ASAM: rho w^2 g /
// (||w g|| + eps)); and w = backup.
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "list_call.cuh"
#include "optkern/rules/second_order.hpp"
#include "optkern/signatures_second_order.hpp"

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

struct SqrtOut {
  static constexpr bool kMax = false;
  double* out;
  __device__ void operator()(double s) const { out[0] = sqrt(s); }
};

template <class T> struct PerturbOp {
  T scale;
  bool adaptive;
  __device__ void operator()(T* v) const {
    if (scale == T(0)) v[2] = v[0];  // rho = 0: w stays bitwise
    else if (adaptive) rules::sam_perturb_adaptive(v[0], v[1], v[2], scale);
    else rules::sam_perturb(v[0], v[1], v[2], scale);
  }
};

// The scale is read from the norm on the device when each block starts.
template <class T> struct Perturb {
  static constexpr int kDepth = 3;
  static constexpr unsigned kWritten = 1u | 4u;  // params, backups
  double rho, eps;
  const double* norm;
  bool adaptive;
  __device__ PerturbOp<T> load() const { return {T(rules::sam_scale(rho, norm[0], eps)), adaptive}; }
};

template <class T> struct CopyOp {
  __device__ void operator()(T* v) const { v[0] = v[1]; }
};
template <class T> struct Copy {
  static constexpr int kDepth = 2;
  static constexpr unsigned kWritten = 1u;
  __device__ CopyOp<T> load() const { return {}; }
};

py::object sam_perturb(py::handle params, py::handle grads, py::handle backups, double rho, double eps,
                       py::handle out, bool adaptive) {
  if (!(rho >= 0.0) || std::isinf(rho)) throw py::value_error("rho: must be finite and >= 0, got " + std::to_string(rho));
  if (!(eps >= 0.0) || std::isinf(eps)) throw py::value_error("eps: must be finite and >= 0, got " + std::to_string(eps));
  ListCall a(params, "params", true);
  a.require(grads, "grads", false);
  a.require(backups, "backups", true);
  double* o = a.add_buffer(out, "out", 1, true);
  a.ready(/*always_launch=*/true);
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    a.reduce<T>(GradSquares<T>{adaptive}, SqrtOut{o});
    a.apply<T>(Perturb<T>{rho, eps, o, adaptive});
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
