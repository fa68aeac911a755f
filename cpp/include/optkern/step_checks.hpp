// precheck_step_, written once for optkern._cpu (cpp/step_checks.cpp, NumPy arrays) and
// optkern._cuda (cuda/step_checks.cu, CuPy arrays): the checks of a step made of several native
// calls (param groups, mixed dtypes; clip_grad_norm_'s norm then scale), run over the whole
// step before the first call writes: every written array and every grad as the step's own calls
// would check them, and no grad sharing memory with, and no two, written arrays. One pass over
// the arrays, no strings unless something is wrong: it runs on every such step, where the same
// checks in Python cost ~10 us an array.
//
// A Kind checks one array of its module's kind and returns the bytes its elements span:
//   typename Kind::Run run(py::handle dtype, name)     the run's dtype, as the checks take it (name(): its name)
//   Span written(h, name, const Run&, run, index)       a written array (name(): its name)
//   Span read(g, param, name, const Run&, run, index)   a grad, of its param's shape
#pragma once
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "optkern/call_args.hpp"

namespace optkern {
namespace step_checks {
namespace py = pybind11;

struct Span {
  uintptr_t lo, hi;
  size_t run, index;  // index into the run's written (or grads) names
};

// ValueError naming the first pair, in address order, of written spans that overlap, or of a
// read span and a written one (read spans may overlap each other: nothing writes them).
template <class Name> void check_spans(std::vector<Span>& written, const std::vector<Span>& read, const Name& wname,
                                       const Name& gname) {
  const auto by_lo = [](const Span& a, const Span& b) { return a.lo < b.lo; };
  std::sort(written.begin(), written.end(), by_lo);
  // reach[k]: the written span reaching furthest among the first k + 1.
  std::vector<size_t> reach(written.size());
  for (size_t k = 0; k < written.size(); ++k) {
    reach[k] = k && written[reach[k - 1]].hi >= written[k].hi ? reach[k - 1] : k;
    if (k && written[reach[k - 1]].hi > written[k].lo)
      throw py::value_error(wname(written[k]) + " shares memory with " + wname(written[reach[k - 1]]) +
                            " (aliasing arrays cannot be updated in place)");
  }
  for (const Span& s : read) {
    const auto k = size_t(std::lower_bound(written.begin(), written.end(), Span{s.hi, 0, 0, 0}, by_lo) -
                          written.begin());  // written spans starting below s.hi
    if (k && written[reach[k - 1]].hi > s.lo)
      throw py::value_error(gname(s) + " shares memory with " + wname(written[reach[k - 1]]) +
                            " (aliasing arrays cannot be updated in place)");
  }
}

// runs: list of (dtype, written arrays, their names, grads, their params, grad names).
template <class Kind> void precheck_runs(py::list runs, Kind& kind) {
  std::vector<Span> written, read;
  std::vector<py::list> wnames, gnames;
  for (size_t r = 0; r < runs.size(); ++r) {
    const py::object item = runs[r];
    const auto what = [r] { return "runs[" + std::to_string(r) + "]"; };
    require_list_named(item, what, "a (dtype, written, names, grads, params, grad names) tuple");
    const py::tuple run = item;
    if (run.size() != 6)
      throw py::value_error(what() + ": expected 6 items (dtype, written, names, grads, params, grad names), got " +
                            std::to_string(run.size()));
    // (each a list, not a bare array walked as its rows; one name per array, one param per grad)
    static const char* kParts[6] = {"dtype", "written", "names", "grads", "params", "grad names"};
    for (size_t k = 1; k < 6; ++k) require_list_named(run[k], [&] { return what() + " " + kParts[k]; }, "a list");
    const auto dt = kind.run(run[0], [&] { return what() + " dtype"; });
    const py::list w = run[1], wn = run[2], g = run[3], p = run[4], gn = run[5];
    if (wn.size() != w.size() || p.size() != g.size() || gn.size() != g.size())
      throw py::value_error(what() + ": expected one name per written array and a param and a name per grad");
    wnames.push_back(wn);
    gnames.push_back(gn);
    for (size_t i = 0; i < w.size(); ++i) {
      const Span s = kind.written(w[i], [&] { return py::str(wn[i]).cast<std::string>(); }, dt, r, i);
      if (s.hi > s.lo) written.push_back(s);
    }
    for (size_t i = 0; i < g.size(); ++i) {
      const Span s = kind.read(g[i], p[i], [&] { return py::str(gn[i]).cast<std::string>(); }, dt, r, i);
      if (s.hi > s.lo) read.push_back(s);
    }
  }
  const auto name = [](const std::vector<py::list>& names) {
    return [&names](const Span& s) { return py::str(names[s.run][s.index]).cast<std::string>(); };
  };
  check_spans(written, read, name(wnames), name(gnames));
}

}  // namespace step_checks
}  // namespace optkern
