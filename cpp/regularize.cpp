// L1 / L2 penalties over many arrays at once (rules/regularize.hpp):
//   penalty_grad_(params, grads, l1, l2, out|None): g += l2 p + l1 sign(p);
//       out[0] = l1 sum|p| + l2/2 sum p^2 when out is given (same pass over p)
//   penalty_value(params, l1, l2, out|None) -> float: the penalty alone
// One chunk list, one OpenMP region; the value is a fixed-order sum of
// per-chunk partials, so it is bitwise the same for any thread count.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "element_loops.hpp"
#include "multi_tensor.hpp"
#include "parallel.hpp"
#include "py_arrays.hpp"
#include "optkern/regularize_args.hpp"
#include "optkern/rules/regularize.hpp"
#include "optkern/signatures_reduce.hpp"

namespace optkern {
namespace py = pybind11;

namespace {

// out: None or a writable 1-element float64 array.
double* out_ptr(py::handle out) {
  if (out.is_none()) return nullptr;
  py::array a = check_array(out, "out", py::dtype::of<double>(), true);
  check_size("out", 1, int64_t(a.size()));
  return static_cast<double*>(a.mutable_data());
}

// Per chunk the generic element loops (element_loops.hpp, compiled per ISA clone: the rules' fmas
// are instructions, not calls): g += the penalty's gradient, and the penalty's value when asked.
template <class T>
double penalty_loop(const ArrayList& p, const ArrayList* g, double l1, double l2, bool want_value) {
  const auto chunks = make_chunks(p.size);
  const int64_t total = total_size(p.size);
  const T tl1 = T(l1), tl2 = T(l2);
  const auto grad = [tl1, tl2](T gi, T pi) { return rules::penalty_grad(pi, gi, tl1, tl2); };
  const auto term = [l1, l2](T pi, T) { return rules::penalty_term(pi, l1, l2); };
  return reduce_chunks(chunks, 2 * total, [&](const Chunk& c) {  // p and g (work: parallel.hpp)
    const T* pp = p.ptr<T>(size_t(c.tensor)) + c.start;
    if (g) zip_loop<T>(grad, g->ptr<T>(size_t(c.tensor)) + c.start, pp, c.len);
    return want_value ? sum_loop<T>(term, pp, pp, c.len) : 0.0;
  });
}

py::object penalty_grad_(py::handle params, py::handle grads, double l1, double l2, py::handle out) {
  // (l1, l2: checked by the signature, sig::penalties)
  const py::dtype dt = list_dtype(params, "params");
  const ArrayList p = gather(params, "params", dt, false);
  const ArrayList g = gather(grads, "grads", dt, true, &p.size);
  const bool f32 = dt.equal(py::dtype::of<float>());  // Python call: before the GIL is dropped
  regularize_args::check_rounded(l1, l2, f32 && p.count() > 0);
  double* o = out_ptr(out);
  const ArrayList ol = regularize_args::out_list<ArrayList>(o);
  regularize_args::check_overlap(p, &g, o ? &ol : nullptr, size_t(dt.itemsize()));
  double v;
  {
    py::gil_scoped_release nogil;
    v = f32 ? penalty_loop<float>(p, &g, l1, l2, o != nullptr) : penalty_loop<double>(p, &g, l1, l2, o != nullptr);
  }
  if (!o) return py::none();
  *o = v;
  return py::float_(v);
}

py::float_ penalty_value(py::handle params, double l1, double l2, py::handle out) {
  // (l1, l2: checked by the signature, sig::penalties)
  const py::dtype dt = list_dtype(params, "params");
  const ArrayList p = gather(params, "params", dt, false);
  double* o = out_ptr(out);
  const ArrayList ol = regularize_args::out_list<ArrayList>(o);
  regularize_args::check_overlap<ArrayList>(p, nullptr, o ? &ol : nullptr, size_t(dt.itemsize()));
  const bool f32 = dt.equal(py::dtype::of<float>());
  double v;
  {
    py::gil_scoped_release nogil;
    v = f32 ? penalty_loop<float>(p, nullptr, l1, l2, true) : penalty_loop<double>(p, nullptr, l1, l2, true);
  }
  if (o) *o = v;
  return py::float_(v);
}

}  // namespace

void register_regularize(py::module_& m) { sig::penalties(m, &penalty_grad_, &penalty_value); }

}  // namespace optkern
