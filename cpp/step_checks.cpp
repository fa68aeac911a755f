// The checks of an optimizer step made of several native calls (param groups,
// mixed dtypes), run over the whole step before the first call writes: every
// param / state array and every grad as the step's own calls would check
// them, and no grad sharing memory with, and no two, written arrays. One pass
// over the array structs, no strings unless something is wrong: it runs on
// every such step.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <string>
#include <vector>

#include "py_arrays.hpp"

namespace optkern {
namespace {
namespace py = pybind11;

struct Span {
  uintptr_t lo, hi;
  size_t run, index;  // index into the run's written (or grads) names
};

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

// runs: list of (dtype, written arrays, their names, grads, their params, grad names). A grad may
// be a DLPack capsule, as in the native calls' read-only lists.
void precheck_step(py::list runs) {
  std::vector<Span> written, read;
  std::vector<py::list> wnames, gnames;
  for (size_t r = 0; r < runs.size(); ++r) {
    const py::tuple run = runs[r];
    const py::dtype dt = run[0];
    const size_t itemsize = size_t(dt.itemsize());
    const py::list w = run[1], wn = run[2], g = run[3], p = run[4], gn = run[5];
    wnames.push_back(wn);
    gnames.push_back(gn);
    for (size_t i = 0; i < w.size(); ++i) {
      const Fault f = array_fault(w[i], dt, itemsize, true);
      if (f != Fault::none) raise_fault(f, w[i], py::str(wn[i]).cast<std::string>(), dt);
      const Span s = span_of(w[i], itemsize, r, i);
      if (s.hi > s.lo) written.push_back(s);
    }
    for (size_t i = 0; i < g.size(); ++i) {
      const Fault f = array_fault(g[i], dt, itemsize, false);
      const auto* pa = py::detail::array_proxy(p[i].ptr());
      if (f == Fault::not_array && PyCapsule_CheckExact(g[i].ptr())) {
        const Span s = capsule_span(g[i], py::str(gn[i]).cast<std::string>(), dt, itemsize, pa, r, i);
        if (s.hi > s.lo) read.push_back(s);
        continue;
      }
      if (f != Fault::none) raise_fault(f, g[i], py::str(gn[i]).cast<std::string>(), dt);
      const auto* ga = py::detail::array_proxy(g[i].ptr());
      if (!same_shape(ga, pa))
        throw py::value_error(py::str(gn[i]).cast<std::string>() + ": expected shape " + shape_str(pa) + ", got " +
                              shape_str(ga));
      const Span s = span_of(g[i], itemsize, r, i);
      if (s.hi > s.lo) read.push_back(s);
    }
  }
  const auto by_lo = [](const Span& a, const Span& b) { return a.lo < b.lo; };
  const auto name = [](const std::vector<py::list>& names, const Span& s) {
    return py::str(names[s.run][s.index]).cast<std::string>();
  };
  std::sort(written.begin(), written.end(), by_lo);
  // reach[k]: the written span reaching furthest among the first k + 1.
  std::vector<size_t> reach(written.size());
  for (size_t k = 0; k < written.size(); ++k) {
    reach[k] = k && written[reach[k - 1]].hi >= written[k].hi ? reach[k - 1] : k;
    if (k && written[reach[k - 1]].hi > written[k].lo)
      throw py::value_error(name(wnames, written[k]) + " shares memory with " + name(wnames, written[reach[k - 1]]) +
                            " (aliasing arrays cannot be updated in place)");
  }
  for (const Span& s : read) {
    const auto k = size_t(std::lower_bound(written.begin(), written.end(), Span{s.hi, 0, 0, 0}, by_lo) -
                          written.begin());  // written spans starting below s.hi
    if (k && written[reach[k - 1]].hi > s.lo)
      throw py::value_error(name(gnames, s) + " shares memory with " + name(wnames, written[reach[k - 1]]) +
                            " (aliasing arrays cannot be updated in place)");
  }
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
