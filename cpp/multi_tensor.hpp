// The CPU multi-tensor apply: one rule (rules/optim.hpp) over many arrays.
//
// Python hands over lists (params, grads, state...). They are checked and
// turned into pointers once (py_arrays.hpp), cut into fixed-size chunks
// (parallel.hpp) and run under one OpenMP region with the GIL released. Inside
// a chunk the loop is `omp simd`, compiled per ISA level (OK_CLONES), with the
// element's state values held in registers across the rule.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "element_loops.hpp"
#include "optkern/common.hpp"
#include "parallel.hpp"
#include "py_arrays.hpp"

namespace optkern {

// ---- whole lists --------------------------------------------------------------

// params, grads and the present state lists, all checked, of element type T.
struct Lists {
  ArrayList p, g;
  std::vector<ArrayList> s;  // present state lists, in argument order
  size_t count() const { return p.count(); }
};

// Applies `rule` to every element of every array, one OpenMP region.
template <class T, class Rule>
void apply_rule(const Rule& rule, const Lists& L) {
  if (int(L.s.size()) != Rule::kState)
    throw std::logic_error("optkern: rule expects " + std::to_string(Rule::kState) + " state lists, got " +
                           std::to_string(L.s.size()));
  const auto chunks = make_chunks(L.p.size);
  const int64_t total = total_size(L.p.size);
  py::gil_scoped_release nogil;
  for_each_chunk(chunks, total * (2 + Rule::kState), [&](const Chunk& c) {  // (work: parallel.hpp)
    const auto at = [&](int k) -> T* {
      return k < int(L.s.size()) ? L.s[size_t(k)].template ptr<T>(size_t(c.tensor)) + c.start : nullptr;
    };
    rule_loop<T, Rule>(rule, L.p.ptr<T>(size_t(c.tensor)) + c.start, L.g.ptr<T>(size_t(c.tensor)) + c.start,
                       at(0), at(1), at(2), c.len);
  });
}

// x <- f(x) over a list.
template <class T, class F>
void apply_map(const F& f, const ArrayList& X) {
  const auto chunks = make_chunks(X.size);
  const int64_t total = total_size(X.size);
  py::gil_scoped_release nogil;
  for_each_chunk(chunks, total,
                 [&](const Chunk& c) { map_loop<T, F>(f, X.ptr<T>(size_t(c.tensor)) + c.start, c.len); });
}

// f(a, b) summed chunk by chunk (b = a when only one list matters): sum_lists' partial sums, in
// the order it folds them (a distributed norm gathers every rank's and folds them alike).
template <class T, class F>
std::vector<double> sum_lists_parts(const F& f, const ArrayList& A, const ArrayList& B) {
  const auto chunks = make_chunks(A.size);
  const int64_t total = total_size(A.size);
  py::gil_scoped_release nogil;
  return chunk_values(chunks, 2 * total, [&](const Chunk& c) {
    return sum_loop<T, F>(f, A.ptr<T>(size_t(c.tensor)) + c.start, B.ptr<T>(size_t(c.tensor)) + c.start, c.len);
  });
}

// sum over all elements of f(a, b) (b = a when only one list matters).
template <class T, class F>
double sum_lists(const F& f, const ArrayList& A, const ArrayList& B) {
  const std::vector<double> v = sum_lists_parts<T>(f, A, B);
  return sum_in_order(v.data(), v.size());
}

// max over all elements of |x|, NaN-propagating.
template <class T>
double absmax_list(const ArrayList& X) {
  const auto chunks = make_chunks(X.size);
  const int64_t total = total_size(X.size);
  py::gil_scoped_release nogil;
  return fold_chunks(
      chunks, total, 0.0,
      [&](const Chunk& c) { return absmax_loop<T>(X.ptr<T>(size_t(c.tensor)) + c.start, c.len); },
      [](double a, double b) { return a != a ? a : (b != b || b > a) ? b : a; });  // NaN sticks
}

// ---- binding helpers ----------------------------------------------------------------

// The element type of a call: params[0]'s dtype (float32 or float64); an empty
// list is float32 (list_float_dtype).
inline py::dtype list_dtype(py::handle seq, const char* name) { return list_float_dtype<HostArrays>(seq, name); }

// Hidden like pybind11's own types, since it holds a py::handle.
struct __attribute__((visibility("hidden"))) StateArg {
  const char* name;
  py::handle list;
  bool optional;  // None allowed: the rule variant without it
};

// Checks params (written), grads (read) and every state list (written):
// dtype, contiguity, sizes matching params, and no written array sharing
// memory with any other or with the `extra` arrays (scalar buffers), through the
// collector both modules share (optkern/call_args.hpp). Throws before anything is written.
inline Lists gather_lists(py::handle params, py::handle grads, const StateArg* first, const StateArg* last,
                          const py::dtype& dt, const std::vector<NamedList>& extra = {}) {
  HostArgs args(dt);
  Lists L;
  L.p = args.list(params, "params", true);
  L.g = args.list(grads, "grads", false, &L.p.size);
  for (const StateArg* it = first; it != last; ++it) {
    if (it->list.is_none()) {
      if (!it->optional) throw py::type_error(std::string(it->name) + ": expected a list of arrays, got None");
      continue;
    }
    L.s.push_back(args.list(it->list, it->name, true, &L.p.size));
  }
  for (const NamedList& e : extra) args.also(e);
  args.check_overlap();
  return L;
}
inline Lists gather_lists(py::handle params, py::handle grads, std::initializer_list<StateArg> states,
                          const py::dtype& dt, const std::vector<NamedList>& extra = {}) {
  return gather_lists(params, grads, states.begin(), states.end(), dt, extra);
}

// An n-element float64 array (scalars the kernel reads or writes in place).
inline double* scalar_buffer(py::handle h, const char* name, bool writable, int64_t n = 1) {
  py::array a = check_array(h, name, py::dtype::of<double>(), writable);
  check_size(name, n, int64_t(a.size()));
  return static_cast<double*>(const_cast<void*>(a.data()));
}

// A scalar buffer of n doubles as a one-array list in units of `itemsize`,
// for the aliasing check against arrays of another dtype.
inline ArrayList scalar_as_list(const double* ptr, size_t itemsize, int64_t n = 1) {
  ArrayList l;
  l.data.push_back(reinterpret_cast<char*>(const_cast<double*>(ptr)));
  l.size.push_back(int64_t((sizeof(double) * size_t(n) + itemsize - 1) / itemsize));
  return l;
}

}  // namespace optkern
