// Turning Python lists of NumPy arrays into raw pointers, after checking
// everything a kernel relies on. Every failure raises a Python exception that
// names the argument and the list index, before any array is written.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace optkern {
namespace py = pybind11;

struct ArrayList {
  std::vector<char*> data;
  std::vector<int64_t> size;
  // References that keep the arrays alive while a kernel runs without the GIL
  // (another thread could drop them from the caller's list meanwhile).
  std::vector<py::object> owners;
  size_t count() const { return data.size(); }
  template <class T> T* ptr(size_t i) const { return reinterpret_cast<T*>(data[i]); }
};

inline std::string item_name(const char* name, size_t i) {
  return std::string(name) + "[" + std::to_string(i) + "]";
}

inline std::string dtype_name(const py::dtype& dt) { return py::str(dt).cast<std::string>(); }

// "cupy.ndarray", "list", ...: enough to tell a wrong backend from a wrong kind.
inline std::string type_name(py::handle h) {
  const py::handle t = py::type::of(h);
  const std::string mod = py::str(t.attr("__module__")).cast<std::string>();
  const std::string name = py::str(t.attr("__qualname__")).cast<std::string>();
  if (mod == "builtins") return name;
  return mod.substr(0, mod.find('.')) + "." + name;
}

// What is wrong with h as a C-contiguous, aligned `dt` array (writable if
// asked). Runs for every array of every optimizer step, so it reads the
// array struct directly and builds no strings unless something is wrong.
enum class Fault { none, not_array, dtype, layout, readonly, misaligned };

inline Fault array_fault(py::handle h, const py::dtype& dt, size_t itemsize, bool writable) {
  namespace d = py::detail;
  if (!py::isinstance<py::array>(h)) return Fault::not_array;
  const d::PyArray_Proxy* a = d::array_proxy(h.ptr());
  if (a->descr != dt.ptr() && !d::npy_api::get().PyArray_EquivTypes_(a->descr, dt.ptr())) return Fault::dtype;
  if (!(a->flags & d::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) return Fault::layout;
  if (writable && !(a->flags & d::npy_api::NPY_ARRAY_WRITEABLE_)) return Fault::readonly;
  if (reinterpret_cast<uintptr_t>(a->data) % uintptr_t(itemsize) != 0) return Fault::misaligned;
  return Fault::none;
}

[[noreturn]] inline void raise_fault(Fault f, py::handle h, const std::string& what, const py::dtype& dt) {
  switch (f) {
    case Fault::not_array: throw py::type_error(what + ": expected a numpy.ndarray, got " + type_name(h));
    case Fault::dtype:
      throw py::type_error(what + ": expected " + dtype_name(dt) + ", got " +
                           dtype_name(py::reinterpret_borrow<py::array>(h).dtype()));
    case Fault::layout: throw py::value_error(what + ": array must be C-contiguous");
    case Fault::readonly: throw py::value_error(what + ": array is read-only");
    default: throw py::value_error(what + ": array data is misaligned");
  }
}

// One array: NumPy ndarray, dtype `dt`, C-contiguous, aligned, writable if asked.
inline py::array check_array(py::handle h, const std::string& what, const py::dtype& dt, bool writable) {
  const Fault f = array_fault(h, dt, size_t(dt.itemsize()), writable);
  if (f != Fault::none) raise_fault(f, h, what, dt);
  return py::reinterpret_borrow<py::array>(h);
}

// A list of arrays. `sizes`, when given, fixes the element count of each.
inline ArrayList gather(py::handle seq, const char* name, const py::dtype& dt, bool writable,
                        const std::vector<int64_t>* sizes = nullptr) {
  if (!py::isinstance<py::sequence>(seq) || py::isinstance<py::str>(seq))
    throw py::type_error(std::string(name) + ": expected a list of arrays");
  auto s = py::reinterpret_borrow<py::sequence>(seq);
  const size_t n = size_t(py::len(s));
  if (sizes && n != sizes->size())
    throw py::value_error(std::string(name) + ": expected " + std::to_string(sizes->size()) +
                          " arrays, got " + std::to_string(n));
  const size_t itemsize = size_t(dt.itemsize());
  ArrayList out;
  out.data.reserve(n);
  out.size.reserve(n);
  out.owners.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    py::object item = s[i];
    const Fault f = array_fault(item, dt, itemsize, writable);
    if (f != Fault::none) raise_fault(f, item, item_name(name, i), dt);
    const auto* a = py::detail::array_proxy(item.ptr());
    int64_t sz = 1;
    for (int k = 0; k < a->nd; ++k) sz *= int64_t(a->dimensions[k]);
    if (sizes && sz != (*sizes)[i])
      throw py::value_error(item_name(name, i) + ": expected " + std::to_string((*sizes)[i]) +
                            " elements, got " + std::to_string(sz));
    out.data.push_back(a->data);
    out.size.push_back(sz);
    out.owners.push_back(std::move(item));
  }
  return out;
}

struct NamedList {
  const char* name;
  const ArrayList* list;
  bool written;
};

// No array that a kernel writes may share memory with any other array of the
// call (a param passed as its own grad, one state buffer used twice, ...).
inline void check_no_overlap(const std::vector<NamedList>& lists, size_t itemsize) {
  struct Span { uintptr_t lo, hi; uint32_t list, index; };
  const auto by_lo = [](const Span& a, const Span& b) { return a.lo < b.lo; };
  size_t total = 0;
  for (const NamedList& l : lists) total += l.list->count();
  std::vector<Span> spans;
  spans.reserve(total);
  // Sort list by list, then merge: arrays of one list are usually allocated in
  // order, which makes this linear (it runs on every optimizer step).
  for (size_t l = 0; l < lists.size(); ++l) {
    const size_t begin = spans.size();
    for (size_t i = 0; i < lists[l].list->count(); ++i) {
      const int64_t n = lists[l].list->size[i];
      if (n == 0) continue;
      auto lo = reinterpret_cast<uintptr_t>(lists[l].list->data[i]);
      spans.push_back({lo, lo + uintptr_t(n) * itemsize, uint32_t(l), uint32_t(i)});
    }
    const auto first = spans.begin() + std::ptrdiff_t(begin);
    if (!std::is_sorted(first, spans.end(), by_lo)) std::sort(first, spans.end(), by_lo);
    if (begin > 0 && first != spans.end() && by_lo(*first, *(first - 1)))
      std::inplace_merge(spans.begin(), first, spans.end(), by_lo);
  }
  // Sweep in address order keeping the spans that reach furthest: a written
  // span overlaps something iff it starts below the furthest end so far; a
  // read span overlaps a written one iff it starts below the furthest
  // written end.
  const auto report = [&](const Span& a, const Span& b) {
    throw py::value_error(item_name(lists[b.list].name, b.index) + " shares memory with " +
                          item_name(lists[a.list].name, a.index) +
                          " (aliasing arrays cannot be updated in place)");
  };
  const Span* far_any = nullptr;
  const Span* far_written = nullptr;
  for (const Span& b : spans) {
    const bool w = lists[b.list].written;
    if (w && far_any && b.lo < far_any->hi) report(*far_any, b);
    if (far_written && b.lo < far_written->hi) report(*far_written, b);
    if (!far_any || b.hi > far_any->hi) far_any = &b;
    if (w && (!far_written || b.hi > far_written->hi)) far_written = &b;
  }
}

}  // namespace optkern
