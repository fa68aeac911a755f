// precheck_step_ on NumPy arrays (the checks and the aliasing test: optkern/step_checks.hpp),
// first_readonly_ and spans_clear. A grad may be a DLPack capsule, as in the native calls'
// read-only lists.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <string>

#include "optkern/signatures_reduce.hpp"
#include "optkern/step_checks.hpp"
#include "py_arrays.hpp"

namespace optkern {
namespace {
namespace py = pybind11;
using step_checks::Span;

// An array already checked to have the run's dtype (`itemsize` bytes each).
Span span_of(py::handle h, size_t itemsize, size_t run, size_t index) {
  const auto* a = py::detail::array_proxy(h.ptr());
  int64_t n = 1;
  for (int k = 0; k < a->nd; ++k) n *= int64_t(a->dimensions[k]);
  const auto lo = reinterpret_cast<uintptr_t>(a->data);
  return {lo, lo + uintptr_t(n) * itemsize, run, index};
}

std::string shape_str(const py::detail::PyArray_Proxy* a) {
  std::string s = "(";
  for (int k = 0; k < a->nd; ++k) s += (k ? ", " : "") + std::to_string(a->dimensions[k]);
  return s + (a->nd == 1 ? ",)" : ")");
}

bool same_shape(const py::detail::PyArray_Proxy* a, const py::detail::PyArray_Proxy* b) {
  if (a->nd != b->nd) return false;
  for (int k = 0; k < a->nd; ++k)
    if (a->dimensions[k] != b->dimensions[k]) return false;
  return true;
}

std::string shape_str(const dlpack::Tensor& t) {
  std::string s = "(";
  for (int k = 0; k < t.ndim; ++k) s += (k ? ", " : "") + std::to_string(t.shape[k]);
  return s + (t.ndim == 1 ? ",)" : ")");
}

// A DLPack capsule grad (the torch adapter's; read_capsule: dtype, layout, alignment) of its
// param's shape: its span. A transposed grad of the right size is refused here as an array's is.
Span capsule_span(py::handle g, const std::string& what, const py::dtype& dt, size_t itemsize,
                  const py::detail::PyArray_Proxy* pa, size_t run, size_t index) {
  const auto [data, n] = read_capsule(g, what, dt, itemsize);
  const auto& t = static_cast<const dlpack::Managed*>(PyCapsule_GetPointer(g.ptr(), "dltensor"))->dl_tensor;
  bool same = t.ndim == pa->nd;
  for (int k = 0; same && k < t.ndim; ++k) same = t.shape[k] == int64_t(pa->dimensions[k]);
  if (!same) throw py::value_error(what + ": expected shape " + shape_str(pa) + ", got " + shape_str(t));
  const auto lo = reinterpret_cast<uintptr_t>(data);
  return {lo, lo + uintptr_t(n) * itemsize, run, index};
}

// NumPy arrays for step_checks::precheck_runs.
struct HostKind {
  struct Run {
    py::dtype dt;
    size_t itemsize;
  };
  template <class Name> Run run(py::handle dtype, const Name& name) const {
    // (pybind11's own refusal of a non-dtype named nothing: "Object of type 'str' is not an instance of 'dtype'")
    if (!py::isinstance<py::dtype>(dtype))
      throw py::type_error(name() + ": expected a numpy.dtype, got " + type_name(dtype));
    const py::dtype dt = py::reinterpret_borrow<py::dtype>(dtype);
    return {dt, size_t(dt.itemsize())};
  }
  template <class Name> Span written(py::handle h, const Name& name, const Run& r, size_t run, size_t i) const {
    const Fault f = array_fault(h, r.dt, r.itemsize, true);
    if (f != Fault::none) raise_fault(f, h, name(), r.dt);
    return span_of(h, r.itemsize, run, i);
  }
  template <class Name>
  Span read(py::handle g, py::handle p, const Name& name, const Run& r, size_t run, size_t i) const {
    // (the param's shape is read from its array header: anything else there was read as one, a crash)
    if (!py::isinstance<py::array>(p))
      throw py::type_error(name() + ": its param is not a numpy.ndarray (got " + type_name(p) + ")");
    const Fault f = array_fault(g, r.dt, r.itemsize, false);
    const auto* pa = py::detail::array_proxy(p.ptr());
    if (f == Fault::not_array && PyCapsule_CheckExact(g.ptr()))
      return capsule_span(g, name(), r.dt, r.itemsize, pa, run, i);
    if (f != Fault::none) raise_fault(f, g, name(), r.dt);
    const auto* ga = py::detail::array_proxy(g.ptr());
    if (!same_shape(ga, pa))
      throw py::value_error(name() + ": expected shape " + shape_str(pa) + ", got " + shape_str(ga));
    return span_of(g, r.itemsize, run, i);
  }
};

void precheck_step(py::list runs) {
  HostKind kind;
  step_checks::precheck_runs(runs, kind);
}

// The position of the first read-only array in `arrays` (NumPy arrays), or -1. The low-precision
// step keeps uint16 views of its half params between steps, and a view keeps the writeable flag
// its param had when the view was made: this reads the params' own flags, one load each.
// (a non-array named with its index, as every list argument's items are)
void require_ndarray(py::handle a, size_t i) {
  if (!py::isinstance<py::array>(a)) raise_fault(Fault::not_array, a, item_name("arrays", i), py::dtype::of<double>());
}

int64_t first_readonly(py::list arrays) {
  for (size_t i = 0; i < arrays.size(); ++i) {
    require_ndarray(arrays[i], i);
    if (!(py::detail::array_proxy(arrays[i].ptr())->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_))
      return int64_t(i);
  }
  return -1;
}

// The position of the first of `arrays` (NumPy arrays) whose shape or strides are not those in
// `layout` (per array: ndim, then its dims, then its strides, back to back), or -1. ZeRO-1 keeps
// each param's elements in the C order of its layout at construction and asks at every step
// whether a param was reshaped or re-strided in place since: reading shape and strides in Python
// cost ~0.6 us a param (a third of a step of 1000 small params), here one comparison of words.
// `layout` an int64 array as it is (an int32 array or a list was converted, a float one refused
// by pybind11 naming nothing: refused by name, as every array argument is).
int64_t first_relaid(py::list arrays, py::handle layout_h) {
  const py::array layout = check_array(layout_h, "layout", py::dtype::of<int64_t>(), false);
  const int64_t* w = static_cast<const int64_t*>(layout.data());
  const int64_t* end = w + layout.size();
  for (size_t i = 0; i < arrays.size(); ++i) {
    require_ndarray(arrays[i], i);
    const auto* a = py::detail::array_proxy(arrays[i].ptr());
    if (w >= end || *w != a->nd || end - w < 1 + 2 * int64_t(a->nd)) return int64_t(i);
    const int64_t* dims = w + 1;
    const int64_t* strides = dims + a->nd;
    for (int k = 0; k < a->nd; ++k)
      if (dims[k] != int64_t(a->dimensions[k]) || strides[k] != int64_t(a->strides[k])) return int64_t(i);
    w = strides + a->nd;
  }
  return -1;
}

// Whether every span [ptrs[i], ptrs[i] + nbytes[i]) (ptrs: ints, the grads' first bytes) is aligned to
// itemsizes[i] and shares no byte with a written span: `wlo` their sorted first bytes, `reach[k]`
// the furthest end among the first k + 1. (The torch adapter's multi-call steps, between full
// checks: ~10 NumPy calls there cost ~90 us a step, their code cold after a large step.)
bool spans_clear(py::list ptrs, const py::array_t<int64_t, py::array::c_style>& nbytes,
                 const py::array_t<int64_t, py::array::c_style>& itemsizes,
                 const py::array_t<int64_t, py::array::c_style>& wlo,
                 const py::array_t<int64_t, py::array::c_style>& reach) {
  const size_t n = ptrs.size();
  if (size_t(nbytes.size()) != n || size_t(itemsizes.size()) != n)
    throw py::value_error("nbytes, itemsizes: expected one per pointer (" + std::to_string(n) + ")");
  if (wlo.size() != reach.size()) throw py::value_error("wlo, reach: expected as many of each");
  const int64_t* nb = nbytes.data();
  const int64_t* isz = itemsizes.data();
  const int64_t* w0 = wlo.data();
  const int64_t* w1 = w0 + wlo.size();
  const int64_t* far = reach.data();
  for (size_t i = 0; i < n; ++i) {
    // (read as an int here: a cast of a str, None, a float or an int past int64 raised pybind11's
    // "Unable to cast" RuntimeError, naming nothing)
    const py::object v = ptrs[i];
    if (!PyLong_Check(v.ptr()) || PyBool_Check(v.ptr()))
      throw py::type_error(item_name("ptrs", i) + ": expected an int (an address), got " + type_name(v));
    int overflow = 0;
    const int64_t lo = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
    if (overflow || lo < 0 || nb[i] < 0 || nb[i] > INT64_MAX - lo)
      throw py::value_error(item_name("ptrs", i) + ": expected an address in [0, 2**63 - nbytes[i]), got " +
                            py::str(v).cast<std::string>());
    if (isz[i] <= 0 || lo % isz[i] != 0) return false;
    const int64_t hi = lo + nb[i];
    const int64_t k = std::lower_bound(w0, w1, hi) - w0;  // written spans starting below hi
    if (hi > lo && k > 0 && far[k - 1] > lo) return false;
  }
  return true;
}

}  // namespace

void register_step_checks(py::module_& m) {
  m.def("first_readonly_", &first_readonly, py::arg("arrays"),
        "The position of the first read-only NumPy array in `arrays`, or -1.");
  m.def("first_relaid_", &first_relaid, py::arg("arrays"), py::arg("layout"),
        "The position of the first NumPy array in `arrays` whose shape or strides differ from `layout` (int64: "
        "per array its ndim, dims and strides, back to back), or -1.");
  m.def("spans_clear", &spans_clear, py::arg("ptrs"), py::arg("nbytes"), py::arg("itemsizes"), py::arg("wlo"),
        py::arg("reach"),
        "Whether every span [ptrs[i], ptrs[i] + nbytes[i]) is aligned to itemsizes[i] and overlaps no written "
        "span (wlo: their sorted starts, reach[k]: the furthest end among the first k + 1).");
  sig::step_prechecks(m, &precheck_step);
}

}  // namespace optkern
