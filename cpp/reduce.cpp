// Reductions and gradient transforms over lists of arrays: global norms
// (deterministic: fixed chunks and lanes, float64 accumulators), clipping,
// finiteness. optkern._cuda exposes the same names and signatures.
#include <pybind11/pybind11.h>

#include <cmath>
#include <limits>
#include <string>

#include "multi_tensor.hpp"
#include "optkern/reduce_args.hpp"
#include "optkern/rules/clip.hpp"
#include "optkern/rules/optim.hpp"
#include "optkern/rules/pnorm.hpp"

namespace optkern {
namespace py = pybind11;
using py::arg;

namespace {

// One read-only or writable list of float32/float64 arrays plus a float64
// scalar buffer that must not alias it.
struct ListAndScalar {
  py::dtype dt;
  ArrayList x;
  double* buf;
};

ListAndScalar gather_with_scalar(py::handle arrays, const char* name, bool writable, py::handle buf,
                                 const char* buf_name, bool buf_writable) {
  ListAndScalar r{list_dtype(arrays, name), {}, nullptr};
  r.x = gather(arrays, name, r.dt, writable);
  r.buf = scalar_buffer(buf, buf_name, buf_writable);
  const ArrayList b = scalar_as_list(r.buf, size_t(r.dt.itemsize()));
  check_no_overlap({{name, &r.x, writable}, {buf_name, &b, buf_writable, true, size_t(r.dt.itemsize())}},
                   size_t(r.dt.itemsize()));
  return r;
}

// sum x^2, the 2-norm's square before its root (a sharded clip sums it over the ranks, then roots).
template <class T>
double sq_norm_of(const ArrayList& x) {
  return sum_lists<T>([](T a, T) { return Square{double(a)}; }, x, x);
}

// (sum |x|^p)^(1/p), or max |x| for p = inf; p = 1 and 2 avoid pow. Other p: scaled by the power of
// two of max |x| (a pass more; rules/pnorm.hpp says why).
template <class T>
double norm_of(const ArrayList& x, double p) {
  if (std::isinf(p)) return absmax_list<T>(x);
  if (p == 2.0) return std::sqrt(sq_norm_of<T>(x));
  if (p == 1.0) return sum_lists<T>([](T a, T) { return std::fabs(double(a)); }, x, x);
  const int e = rules::pnorm_exp(absmax_list<T>(x));
  const rules::PnormScale c = rules::pnorm_scale(e);
  return rules::pnorm_root(sum_lists<T>([p, c](T a, T) { return rules::pnorm_term(double(a), c, p); }, x, x), e, p);
}

double grad_norm(py::handle arrays, double norm_type, py::handle out) {
  reduce_args::check_norm_type(norm_type);
  ListAndScalar a = gather_with_scalar(arrays, "arrays", false, out, "out", true);
  double n = 0.0;
  dispatch_float(a.dt, [&](auto t) { n = norm_of<decltype(t)>(a.x, norm_type); });
  *a.buf = n;
  return n;
}

double grad_sq_norm(py::handle arrays, py::handle out) {
  ListAndScalar a = gather_with_scalar(arrays, "arrays", false, out, "out", true);
  double s = 0.0;
  dispatch_float(a.dt, [&](auto t) { s = sq_norm_of<decltype(t)>(a.x); });
  *a.buf = s;
  return s;
}

void clip_scale(py::handle arrays, double max_norm, py::handle total_norm_buf, const std::string& norm_dtype) {
  const rules::NormDtype nd = reduce_args::norm_dtype_of(norm_dtype);
  ListAndScalar a = gather_with_scalar(arrays, "arrays", true, total_norm_buf, "total_norm_buf", false);
  dispatch_float(a.dt, [&](auto t) {
    using T = decltype(t);
    const double coef = rules::clip_coef_of<T>(nd, max_norm, *a.buf);
    if (coef == 1.0) return;  // multiplying by one changes nothing
    apply_map<T>(rules::Scale<T>{coef}, a.x);
  });
}

void clamp(py::handle arrays, double clip_value) {
  reduce_args::check_clip_value(clip_value);
  const py::dtype dt = list_dtype(arrays, "arrays");
  const ArrayList x = gather(arrays, "arrays", dt, true);
  check_no_overlap({{"arrays", &x, true}}, size_t(dt.itemsize()));
  dispatch_float(dt, [&](auto t) {
    using T = decltype(t);
    apply_map<T>(rules::ClampValue<T>{T(clip_value)}, x);
  });
}

void all_finite(py::handle arrays, py::handle out) {
  ListAndScalar a = gather_with_scalar(arrays, "arrays", false, out, "out", true);
  double bad = 0.0;
  dispatch_float(a.dt, [&](auto t) {
    using T = decltype(t);
    // x - x is 0 for finite x and NaN for inf/NaN; the sum is NaN iff any is.
    bad = sum_lists<T>([](T v, T) { return double(v - v); }, a.x, a.x);
  });
  *a.buf = bad == 0.0 ? 1.0 : 0.0;
}

}  // namespace

void register_reduce(py::module_& m) {
  m.def("grad_norm", &grad_norm,
        "Total norm of all arrays (norm_type p >= 1 or inf) in float64, bitwise independent of the thread "
        "count; written to out[0] and returned.",
        arg("arrays"), arg("norm_type"), arg("out"));
  m.def("grad_sq_norm", &grad_sq_norm,
        "Sum of the squares of all arrays' elements (grad_norm's 2-norm before its square root) in float64, "
        "bitwise independent of the thread count; written to out[0] and returned.",
        arg("arrays"), arg("out"));
  m.def("clip_scale_", &clip_scale,
        "arrays *= min(1, max_norm / (total_norm_buf[0] + 1e-6)) in place, the factor computed in norm_dtype "
        "('' the arrays' dtype) as torch computes it in its norm's dtype.",
        arg("arrays"), arg("max_norm"), arg("total_norm_buf"), arg("norm_dtype") = "");
  m.def("clamp_", &clamp, "arrays = clip(arrays, -clip_value, clip_value) in place.", arg("arrays"),
        arg("clip_value"));
  m.def("all_finite", &all_finite, "out[0] = 1.0 if every element of every array is finite, else 0.0.",
        arg("arrays"), arg("out"));
}

}  // namespace optkern
