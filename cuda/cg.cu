// The vector passes of one conjugate-gradient iteration on CuPy arrays (same contract and rules as
// cpp/cg.cpp; the checks: optkern/cg_args.hpp), through the multi-tensor apply / deterministic
// reduce of multi_tensor.cuh on one-array lists, on CuPy's current stream. Each sum is copied back to the host (hessian.cg
// needs alpha and beta there, as it needs the product's curvature).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "list_call.cuh"
#include "optkern/cg_args.hpp"
#include "optkern/rules/second_order.hpp"
#include "optkern/signatures_second_order.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace {

using cg_args::finite;

// The vectors, checked as cpp/cg.cpp checks them (optkern/cg_args.hpp), each as a one-array list
// for the multi-tensor apply / reduce of multi_tensor.cuh.
class Vectors : public cg_args::Vectors<DeviceArrays> {
 public:
  Vectors(py::handle first, const char* name) : cg_args::Vectors<DeviceArrays>(first, name), first_name_(name) {
    lists_.reserve(4);
  }

  void add(py::handle h, const char* name, bool written) {
    DeviceList l;  // (no owners: the collector's args keep h)
    l.data.push_back(cg_args::Vectors<DeviceArrays>::add(h, name, written));
    l.size.push_back(n);
    lists_.push_back(std::move(l));
  }

  DType dtype() const { return dt; }
  int device() const { return args.device; }
  cudaStream_t stream() const { return stream_; }

  // Aliasing checks; then false when the vectors are empty (nothing is launched).
  bool ready() {
    args.check_overlap();
    if (n == 0) return false;
    require_current_device(args.device, first_name_);
    stream_ = current_stream();
    return true;
  }

  template <class T, class Src> void apply(const Src& src) const {
    const auto l = lists<Src::kDepth>();
    py::gil_scoped_release nogil;
    mt::launch_apply<T>(src, l, stream_);
  }

  template <class T, class Op, class Fin> void reduce(const Op& op, const Fin& fin) const {
    const auto l = lists<Op::kDepth>();
    py::gil_scoped_release nogil;
    mt::launch_reduce<T>(op, l, fin, args.device, stream_);
  }

 private:
  template <int D> mt::Lists<D> lists() const {
    if (lists_.size() != size_t(D)) throw std::logic_error("cg Vectors: op depth does not match the vectors");
    mt::Lists<D> l{};
    for (int k = 0; k < D; ++k) l[size_t(k)] = &lists_[size_t(k)];
    return l;
  }

  const char* first_name_;
  cudaStream_t stream_ = nullptr;
  std::vector<DeviceList> lists_;
};

struct Store {
  static constexpr bool kMax = false;
  double* out;
  __device__ void operator()(double s) const { out[0] = s; }
};

// Lists (p, y): p.(y + lambda p); kScaled: the redo where that sum was not finite (curvature).
template <class T, bool kScaled = false> struct Curvature {
  static constexpr int kDepth = 2;
  static constexpr bool kMax = false;
  T lambda;
  __device__ double operator()(const T* v) const { return rules::cg_curvature_term<kScaled>(v[1], v[0], lambda); }
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
template <class T, class Op> double sum_to_host(const Vectors& a, const Op& op) {
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

// p.(y + lambda p) over the call's lists (p, y), summed again scaled where the plain sum was not
// finite (rules::cg_curvature_term: an indefinite A near float64's max; a second launch on that path only).
template <class T> double curvature(const Vectors& a, T lambda) {
  const double s = sum_to_host<T>(a, Curvature<T>{lambda});
  return std::isfinite(s) ? s : rules::cg_curvature_unscale(sum_to_host<T>(a, Curvature<T, true>{lambda}));
}

double cg_curvature(py::handle p, py::handle y, double damping) {
  Vectors a(p, "p");
  a.add(p, "p", false);
  a.add(y, "y", false);
  finite("damping", damping);
  if (!a.ready()) return 0.0;
  double s = 0.0;
  dispatch_float(a.dtype(), [&](auto z) {
    using T = decltype(z);
    s = curvature<T>(a, T(damping));
  });
  return s;
}

double cg_update(py::handle x, py::handle r, py::handle p, py::handle y, double alpha, double damping) {
  Vectors a(x, "x");
  a.add(x, "x", true);
  a.add(r, "r", true);
  a.add(p, "p", false);
  a.add(y, "y", false);
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
  Vectors a(p, "p");
  a.add(p, "p", true);
  a.add(z, "z", false);
  finite("beta", beta);
  if (!a.ready()) return;
  dispatch_float(a.dtype(), [&](auto t) {
    using T = decltype(t);
    a.apply<T>(Direction<T>{T(beta)});
  });
}

// cpp/cg.cpp's cg_iteration_ (its contract; the decisions of optkern/cg_args.hpp between the
// passes): the three kernels of cg_curvature, cg_update_ and cg_direction_ in turn, each sum read
// back to decide the next launch.
py::tuple cg_iteration(py::handle x, py::handle r, py::handle p, py::handle y, double rz, double damping, double tol,
                       checks::Flag stop_on_negative_curvature_arg) {
  const bool stop_on_negative_curvature = checks::flag(stop_on_negative_curvature_arg, "stop_on_negative_curvature");
  Vectors u(x, "x");  // (x, r, p, y): every check before anything is launched; p is written too
  u.add(x, "x", true);
  u.add(r, "r", true);
  u.add(p, "p", true);
  u.add(y, "y", false);
  finite("rz", rz);
  finite("damping", damping);
  if (std::isnan(tol)) throw py::value_error("tol: must not be NaN");
  const bool any = u.ready();
  Vectors c(p, "p");
  c.add(p, "p", false);
  c.add(y, "y", false);
  Vectors d(p, "p");
  d.add(p, "p", true);
  d.add(r, "r", false);
  double pAp = 0.0, rr = NAN, alpha = 0.0, beta = 0.0;
  if (any) {
    c.ready();
    d.ready();
  }
  dispatch_float(u.dtype(), [&](auto t) {
    using T = decltype(t);
    if (any) pAp = curvature<T>(c, T(damping));
    if (!cg_args::cg_step(pAp, rz, stop_on_negative_curvature, alpha)) return;
    if (any) {
      u.apply<T>(Update<T>{T(alpha), T(damping)});
      rr = sum_to_host<T>(u, ResidualSquares<T>{});
    } else {
      rr = 0.0;
    }
    if (cg_args::cg_next(rr, rz, tol, beta) && any) d.apply<T>(Direction<T>{T(beta)});
  });
  return py::make_tuple(pAp, rr);
}

}  // namespace

void register_cg(py::module_& m) { sig::cg(m, &cg_curvature, &cg_update, &cg_direction, &cg_iteration); }

}  // namespace optkern
