// The vector passes of one conjugate-gradient iteration on CuPy arrays (same contract and rules as
// cpp/cg.cpp), through the multi-tensor apply / deterministic reduce of list_call.cuh on
// one-array lists, on CuPy's current stream. Each sum is copied back to the host (hessian.cg
// needs alpha and beta there, as it needs the product's curvature).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "list_call.cuh"
#include "optkern/rules/second_order.hpp"
#include "optkern/signatures_second_order.hpp"

namespace optkern {
namespace {

// A one-array list of a vector: 1-D, as cpp/cg.cpp requires (the list call checks only sizes, so a
// (2, 4) array would otherwise pass for 8 elements). Non-CuPy input is left to the list's TypeError.
py::list one(py::handle h, const char* name) {
  if (is_cupy(h) && DeviceArrays::shape(h).size() != 1)
    throw py::value_error(std::string(name) + ": expected a 1-D array");
  py::list l;
  l.append(h);
  return l;
}

double finite(const char* name, double v) {
  if (!std::isfinite(v)) throw py::value_error(std::string(name) + ": must be finite, got " + std::to_string(v));
  return v;
}

struct Store {
  static constexpr bool kMax = false;
  double* out;
  __device__ void operator()(double s) const { out[0] = s; }
};

// Lists (p, y): p.(y + lambda p).
template <class T> struct Curvature {
  static constexpr int kDepth = 2;
  static constexpr bool kMax = false;
  T lambda;
  __device__ double operator()(const T* v) const { return double(v[0]) * double(rules::cg_damped(v[1], v[0], lambda)); }
};

// Lists (x, r, p, y): r.r.
template <class T> struct ResidualSquares {
  static constexpr int kDepth = 4;
  static constexpr bool kMax = false;
  __device__ double operator()(const T* v) const { return double(v[1]) * double(v[1]); }
};

template <class T> struct UpdateOp {
  T alpha, lambda;
  __device__ void operator()(T* v) const { rules::cg_update(v[0], v[1], v[2], rules::cg_damped(v[3], v[2], lambda), alpha); }
};
template <class T> struct Update {
  static constexpr int kDepth = 4;
  static constexpr unsigned kWritten = 1u | 2u;  // x, r
  T alpha, lambda;
  __device__ UpdateOp<T> load() const { return {alpha, lambda}; }
};

template <class T> struct DirectionOp {
  T beta;
  __device__ void operator()(T* v) const { v[0] = rules::cg_direction(v[1], v[0], beta); }
};
template <class T> struct Direction {
  static constexpr int kDepth = 2;
  static constexpr unsigned kWritten = 1u;  // p
  T beta;
  __device__ DirectionOp<T> load() const { return {beta}; }
};

// The reduction of op over the call's lists, copied to the host.
template <class T, class Op> double sum_to_host(const ListCall& a, const Op& op) {
  const ScratchBuffer buf(sizeof(double), a.stream(), a.device());
  a.reduce<T>(op, Store{buf.as<double>()});
  double s = 0.0;
  cudaError_t e;
  {
    py::gil_scoped_release nogil;
    e = cudaMemcpyAsync(&s, buf.as<double>(), sizeof(double), cudaMemcpyDeviceToHost, a.stream());
    if (e == cudaSuccess) e = cudaStreamSynchronize(a.stream());
  }
  check_cuda(e, "optkern._cuda cg: reading a sum back");
  return s;
}

double cg_curvature(py::handle p, py::handle y, double damping) {
  ListCall a(one(p, "p"), "p", false);
  a.add(one(y, "y"), "y", false);
  finite("damping", damping);
  if (!a.ready()) return 0.0;
  double s = 0.0;
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    s = sum_to_host<T>(a, Curvature<T>{T(damping)});
  });
  return s;
}

double cg_update(py::handle x, py::handle r, py::handle p, py::handle y, double alpha, double damping) {
  ListCall a(one(x, "x"), "x", true);
  a.add(one(r, "r"), "r", true);
  a.add(one(p, "p"), "p", false);
  a.add(one(y, "y"), "y", false);
  finite("alpha", alpha);
  finite("damping", damping);
  if (!a.ready()) return 0.0;
  double s = 0.0;
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    a.apply<T>(Update<T>{T(alpha), T(damping)});
    s = sum_to_host<T>(a, ResidualSquares<T>{});
  });
  return s;
}

void cg_direction(py::handle p, py::handle z, double beta) {
  ListCall a(one(p, "p"), "p", true);
  a.add(one(z, "z"), "z", false);
  finite("beta", beta);
  if (!a.ready()) return;
  dispatch_float(a.dtype(), [&](auto t) {
    using T = decltype(t);
    a.apply<T>(Direction<T>{T(beta)});
  });
}

}  // namespace

void register_cg(py::module_& m) { sig::cg(m, &cg_curvature, &cg_update, &cg_direction); }

}  // namespace optkern
