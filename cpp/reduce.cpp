// Reductions and gradient transforms over lists of arrays: global norms
// (deterministic: fixed chunks and lanes, float64 accumulators), clipping,
// finiteness. Their Python signatures: optkern/signatures_reduce.hpp (optkern._cuda's too).
#include <pybind11/pybind11.h>

#include <cmath>
#include <limits>
#include <string>

#include "multi_tensor.hpp"
#include "optkern/reduce_args.hpp"
#include "optkern/rules/clip.hpp"
#include "optkern/rules/optim.hpp"
#include "optkern/rules/pnorm.hpp"
#include "optkern/signatures_reduce.hpp"

namespace optkern {
namespace py = pybind11;

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

// The terms of the p-norm (finite p) summed chunk by chunk in the fixed blocking, in the order
// norm_finish folds them: |x| (p = 1), x^2 (p = 2: an fma a term, Square), else |x 2^-e|^p with 2^e
// from `amax` (the list's max |x|, or the global one of a distributed norm; rules/pnorm.hpp).
template <class T>
std::vector<double> norm_parts(const ArrayList& x, double p, double amax) {
  if (p == 2.0) return sum_lists_parts<T>([](T a, T) { return Square{double(a)}; }, x, x);
  if (p == 1.0) return sum_lists_parts<T>([](T a, T) { return std::fabs(double(a)); }, x, x);
  const rules::PnormScale c = rules::pnorm_scale(rules::pnorm_exp(amax));
  return sum_lists_parts<T>([p, c](T a, T) { return rules::pnorm_term(double(a), c, p); }, x, x);
}

// The parts folded in order, then rooted: none for p = 1, sqrt for 2, else rules::pnorm_root by
// amax's power of two. The one end of every finite-p norm: one process's (norm_of) and the ranks'
// gathered parts (grad_norm_finish), so the two give the same bits from the same parts.
double norm_finish(const double* parts, size_t n, double p, double amax) {
  const double s = sum_in_order(parts, n);
  if (p == 2.0) return std::sqrt(s);
  if (p == 1.0) return s;
  return rules::pnorm_root(s, rules::pnorm_exp(amax), p);
}

// sum x^2, the 2-norm's square before its root (AdaGrad-Norm's b^2 increment).
template <class T>
double sq_norm_of(const ArrayList& x) {
  const std::vector<double> v = norm_parts<T>(x, 2.0, 0.0);
  return sum_in_order(v.data(), v.size());
}

// (sum |x|^p)^(1/p), or max |x| for p = inf. Other p than 1 and 2: scaled by the power of two of
// max |x| (a pass more; rules/pnorm.hpp says why).
template <class T>
double norm_of(const ArrayList& x, double p) {
  if (std::isinf(p)) return absmax_list<T>(x);
  const double amax = p == 1.0 || p == 2.0 ? 0.0 : absmax_list<T>(x);
  const std::vector<double> v = norm_parts<T>(x, p, amax);
  return norm_finish(v.data(), v.size(), p, amax);
}

double grad_norm(py::handle arrays, double norm_type, py::handle out) {
  reduce_args::check_norm_type(norm_type);
  ListAndScalar a = gather_with_scalar(arrays, "arrays", false, out, "out", true);
  double n = 0.0;
  dispatch_float(a.dt, [&](auto t) { n = norm_of<decltype(t)>(a.x, norm_type); });
  *a.buf = n;
  return n;
}

// `out`: the norm's buffer, checked as grad_norm's (writable, apart from the arrays) though only read
// here (the max |x| that scales the terms), so that a caller's bad `out` is refused before any rank's
// collective (clip_grad_norm_ with comm=), not after.
py::array_t<double> grad_norm_parts(py::handle arrays, double norm_type, py::handle out) {
  reduce_args::check_finite_norm_type(norm_type);
  ListAndScalar a = gather_with_scalar(arrays, "arrays", false, out, "out", true);
  std::vector<double> v;
  dispatch_float(a.dt, [&](auto t) { v = norm_parts<decltype(t)>(a.x, norm_type, *a.buf); });
  py::array_t<double> r(py::ssize_t(v.size()));
  std::copy(v.begin(), v.end(), r.mutable_data());
  return r;
}

double grad_norm_finish(py::handle parts, double norm_type, py::handle out) {
  reduce_args::check_finite_norm_type(norm_type);
  const py::array p = check_array(parts, "parts", py::dtype::of<double>(), false);
  if (p.ndim() != 1)
    throw py::value_error("parts: expected a 1-D array, got " + std::to_string(p.ndim()) + " dimensions");
  double* o = scalar_buffer(out, "out", true);
  const double* v = static_cast<const double*>(p.data());
  const ArrayList pl = scalar_as_list(v, sizeof(double), int64_t(p.size())), ol = scalar_as_list(o, sizeof(double));
  check_no_overlap({{"parts", &pl, false, true, sizeof(double)}, {"out", &ol, true, true, sizeof(double)}}, sizeof(double));
  const double n = norm_finish(v, size_t(p.size()), norm_type, *o);
  *o = n;
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
  sig::norms(m, &grad_norm, &grad_norm_parts, kChunk, &grad_norm_finish, &grad_sq_norm);
  sig::clipping(m, &clip_scale, &clamp, &all_finite);
}

}  // namespace optkern
