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

// One array: NumPy ndarray, dtype `dt`, C-contiguous, aligned, writable if asked.
inline py::array check_array(py::handle h, const std::string& what, const py::dtype& dt, bool writable) {
  if (!py::isinstance<py::array>(h))
    throw py::type_error(what + ": expected a numpy.ndarray, got " + type_name(h));
  auto a = py::reinterpret_borrow<py::array>(h);
  if (!a.dtype().is(dt) && !a.dtype().equal(dt))
    throw py::type_error(what + ": expected " + dtype_name(dt) + ", got " + dtype_name(a.dtype()));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(what + ": array must be C-contiguous");
  if (writable && !a.writeable())
    throw py::value_error(what + ": array is read-only");
  if (reinterpret_cast<uintptr_t>(a.data()) % uintptr_t(a.itemsize()) != 0)
    throw py::value_error(what + ": array data is misaligned");
  return a;
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
  ArrayList out;
  out.data.reserve(n);
  out.size.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    py::array a = check_array(s[i], item_name(name, i), dt, writable);
    const int64_t sz = int64_t(a.size());
    if (sizes && sz != (*sizes)[i])
      throw py::value_error(item_name(name, i) + ": expected " + std::to_string((*sizes)[i]) +
                            " elements, got " + std::to_string(sz));
    out.data.push_back(static_cast<char*>(const_cast<void*>(a.data())));
    out.size.push_back(sz);
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
  struct Span { uintptr_t lo, hi; size_t list, index; };
  std::vector<Span> spans;
  for (size_t l = 0; l < lists.size(); ++l)
    for (size_t i = 0; i < lists[l].list->count(); ++i) {
      const int64_t n = lists[l].list->size[i];
      if (n == 0) continue;
      auto lo = reinterpret_cast<uintptr_t>(lists[l].list->data[i]);
      spans.push_back({lo, lo + uintptr_t(n) * itemsize, l, i});
    }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.lo < b.lo; });
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
