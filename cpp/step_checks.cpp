// precheck_step_ on NumPy arrays (the checks and the aliasing test: optkern/step_checks.hpp),
// and first_readonly_. A grad may be a DLPack capsule, as in the native calls' read-only lists.
#include <pybind11/pybind11.h>

#include <string>

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
  Run run(py::handle dtype) const {
    const py::dtype dt = py::reinterpret_borrow<py::object>(dtype);
    return {dt, size_t(dt.itemsize())};
  }
  template <class Name> Span written(py::handle h, const Name& name, const Run& r, size_t run, size_t i) const {
    const Fault f = array_fault(h, r.dt, r.itemsize, true);
    if (f != Fault::none) raise_fault(f, h, name(), r.dt);
    return span_of(h, r.itemsize, run, i);
  }
  template <class Name>
  Span read(py::handle g, py::handle p, const Name& name, const Run& r, size_t run, size_t i) const {
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
int64_t first_readonly(py::list arrays) {
  for (size_t i = 0; i < arrays.size(); ++i) {
    if (!py::isinstance<py::array>(arrays[i])) throw py::type_error("arrays: expected NumPy arrays");
    if (!(py::detail::array_proxy(arrays[i].ptr())->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_))
      return int64_t(i);
  }
  return -1;
}

}  // namespace

void register_step_checks(py::module_& m) {
  m.def("first_readonly_", &first_readonly, py::arg("arrays"),
        "The position of the first read-only NumPy array in `arrays`, or -1.");
  m.def("precheck_step_", &precheck_step, py::arg("runs"),
        "Check a multi-call optimizer step before it writes: runs of (dtype, written arrays, their names, grads, "
        "their params, grad names).");
}

}  // namespace optkern
