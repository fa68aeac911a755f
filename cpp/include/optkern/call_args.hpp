// The argument checks of every binding of both native modules, written once:
// the aliasing check (OverlapCheck) and the collector of one call's arrays
// (Args), templated on an array kind. The CPU module instantiates them on
// NumPy arrays (cpp/py_arrays.hpp), the CUDA module on CuPy arrays
// (cuda/cuda_arrays.hpp): the same checks in the same order, with the same
// messages naming the argument (and the list index), all before the first
// write or launch.
#pragma once
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace optkern {
namespace py = pybind11;

inline std::string item_name(const char* name, size_t i) {
  return std::string(name) + "[" + std::to_string(i) + "]";
}

// Element i of a Philox draw takes counter offset + i (optkern/philox.hpp): offset + n must not
// pass 2^64, as the Python wrappers check (optkern.random, optkern.norm.dropout). Past it the
// counters wrap: a native call on the CPU returned wrapped words, and the GPU's block count
// overflowed, every thread then looping practically for ever.
inline void check_philox_counter(int64_t n, uint64_t offset) {
  if (n > 0 && uint64_t(n) - 1 > ~offset)
    throw py::value_error("offset: offset + " + std::to_string(n) + " elements overflows the 64-bit counter");
}

// "cupy.ndarray", "list", ...: enough to tell a wrong backend from a wrong kind.
inline std::string type_name(py::handle h) {
  const py::type t = py::type::of(h);
  const std::string mod = py::str(t.attr("__module__")).cast<std::string>();
  const std::string name = py::str(t.attr("__qualname__")).cast<std::string>();
  if (mod == "builtins") return name;
  return mod.substr(0, mod.find('.')) + "." + name;
}

// Whether `h` is an array itself (NumPy, CuPy, DLPack, a buffer), not a list of arrays.
inline bool array_like(py::handle h) {
  return PyObject_CheckBuffer(h.ptr()) || py::hasattr(h, "__array_interface__") ||
         py::hasattr(h, "__cuda_array_interface__") || py::hasattr(h, "__dlpack__");
}

// TypeError "name: expected a list of arrays, got T" unless `seq` is a list, a tuple or another
// sequence of items. A bare array is refused, not walked as the list of its rows: the CPU module
// did that (a 2-D array passed as params stepped its rows, each a fresh view the call made),
// where the CUDA module refused it; a str neither. `expected` names what the items are.
// (`name()` makes the name, only on failure.)
template <class Name> void require_list_named(py::handle seq, const Name& name, const char* expected) {
  if (PyList_Check(seq.ptr()) || PyTuple_Check(seq.ptr())) return;  // (every step: no attribute look-ups)
  if (!PySequence_Check(seq.ptr()) || PyUnicode_Check(seq.ptr()) || array_like(seq))
    throw py::type_error(std::string(name()) + ": expected " + expected + ", got " + type_name(seq));
}
inline void require_list(py::handle seq, const char* name, const char* expected = "a list of arrays") {
  require_list_named(seq, [name] { return name; }, expected);
}

// "1 array", "0 arrays", "7 arrays": a count and its noun in an error message, one wording for both
// modules (and optkern._array_checks.counted on the Python side); lists read "expected 1 arrays".
inline std::string counted(int64_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

// ValueError "what: expected 1 element, got 2" ("7 elements" past one) unless an array holds
// `want` elements: one wording for every size check of both modules (lone arrays, list items,
// the 1-element float64 buffers of norms, penalties and step counters), which had three.
inline void check_size(const std::string& what, int64_t want, int64_t got) {
  if (got != want)
    throw py::value_error(what + ": expected " + counted(want, "element") + ", got " + std::to_string(got));
}

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// No array that a kernel writes may share memory with any other array of the
// call (a param passed as its own grad, one state buffer used twice,
// overlapping views of one allocation). Host pointers, or device pointers of
// one device, share one address space: this is an interval test on bytes.
class OverlapCheck {
 public:
  void reserve(size_t arrays) { spans_.reserve(arrays); }

  // Start an argument: a list (its arrays named `name[i]`) or a lone array.
  void begin(const char* name, bool written, bool list) {
    close();
    args_.push_back({name, written, list});
    open_ = spans_.size();
  }

  // Array `index` of the current argument; empty arrays overlap nothing.
  void add(const void* p, uint64_t bytes, size_t index) {
    if (bytes == 0) return;
    const auto lo = reinterpret_cast<uintptr_t>(p);
    spans_.push_back({lo, lo + uintptr_t(bytes), uint32_t(args_.size() - 1), uint32_t(index)});
  }

  // Raise ValueError "b shares memory with a" for the first overlap in
  // address order (ties: argument order) that involves a written array.
  void check() {
    close();
    // Sweep keeping the spans that reach furthest: a written span overlaps
    // something iff it starts below the furthest end so far; a read span
    // overlaps a written one iff it starts below the furthest written end.
    const Span* far_any = nullptr;
    const Span* far_written = nullptr;
    for (const Span& b : spans_) {
      const bool w = args_[b.arg].written;
      if (w && far_any && b.lo < far_any->hi) report(*far_any, b);
      if (far_written && b.lo < far_written->hi) report(*far_written, b);
      if (!far_any || b.hi > far_any->hi) far_any = &b;
      if (w && (!far_written || b.hi > far_written->hi)) far_written = &b;
    }
  }

 private:
  struct Arg { const char* name; bool written, list; };
  struct Span { uintptr_t lo, hi; uint32_t arg, index; };
  static bool by_lo(const Span& a, const Span& b) { return a.lo < b.lo; }

  // Sort the current argument's spans and merge them into the sorted rest:
  // arrays of one list are usually allocated in order, which makes this
  // linear (it runs on every optimizer step).
  void close() {
    const auto first = spans_.begin() + std::ptrdiff_t(open_);
    if (!std::is_sorted(first, spans_.end(), by_lo)) std::stable_sort(first, spans_.end(), by_lo);
    if (open_ > 0 && first != spans_.end() && by_lo(*first, *(first - 1)))
      std::inplace_merge(spans_.begin(), first, spans_.end(), by_lo);
    open_ = spans_.size();
  }

  std::string label(const Span& s) const {
    const Arg& a = args_[s.arg];
    return a.list ? item_name(a.name, s.index) : std::string(a.name);
  }

  [[noreturn]] void report(const Span& a, const Span& b) const {
    throw py::value_error(label(b) + " shares memory with " + label(a) +
                          " (aliasing arrays cannot be updated in place)");
  }

  std::vector<Arg> args_;
  std::vector<Span> spans_;
  size_t open_ = 0;
};

// One argument of an aliasing check over lists gathered already (L: the CPU's
// ArrayList or the GPU's DeviceList: count(), data[i], size[i] items).
template <class L> struct NamedArrays {
  const char* name;
  const L* list;  // null: an optional argument not given
  bool written;
  bool single = false;  // a lone float64 buffer: named without an index, 8-byte items
  size_t itemsize = 0;  // bytes per item when not the call's (calls mixing dtypes)
};

// No written array of `lists` shares memory with any other (OverlapCheck).
template <class L> void check_overlaps(const std::vector<NamedArrays<L>>& lists, size_t itemsize) {
  OverlapCheck c;
  size_t total = 0;
  for (const auto& l : lists) total += l.list ? l.list->count() : 0;
  c.reserve(total);
  for (const auto& l : lists) {
    if (!l.list) continue;
    c.begin(l.name, l.written, !l.single);
    const size_t isz = l.itemsize ? l.itemsize : l.single ? 8 : itemsize;
    for (size_t i = 0; i < l.list->count(); ++i) c.add(l.list->data[i], uint64_t(l.list->size[i]) * isz, i);
  }
  c.check();
}

// The dtype of `h` (the array that fixes a call's dtype): float32 or float64,
// and float16 / bfloat16 too when `low_precision` (CUDA storage types).
template <class Arrays>
typename Arrays::DType float_dtype(py::handle h, const char* what, bool low_precision = false) {
  if (!Arrays::is_array(h))
    throw py::type_error(std::string(what) + ": expected a " + Arrays::kTypeName + ", got " + type_name(h));
  const std::string n = Arrays::dtype_name(h);
  if (n == "float32" || n == "float64" || (low_precision && (n == "float16" || n == "bfloat16")))
    return Arrays::dtype_named(n);
  throw py::type_error(std::string(what) + ": expected " +
                       (low_precision ? "float16, bfloat16, float32 or float64" : "float32 or float64") + ", got " +
                       n);
}

// The dtype of a call whose first list is `seq` (a list: require_list): its first array's, float32
// or float64 (float_dtype); an empty list is float32.
template <class Arrays> typename Arrays::DType list_float_dtype(py::handle seq, const char* name) {
  require_list(seq, name);
  const auto s = py::reinterpret_borrow<py::sequence>(seq);
  if (py::len(s) == 0) return Arrays::dtype_named("float32");
  // (an object, not a handle: a sequence may make the item on lookup, freed with the accessor)
  const py::object a0 = s[0];
  return float_dtype<Arrays>(a0, item_name(name, 0).c_str());
}

// The checked arrays of one call: each of the call's dtype (or one given),
// C-contiguous, aligned, writable where written, of the expected size or
// shape, all on one device; then no written array overlapping another.
// Lone arrays (get, opt, shaped) and lists of arrays (list: multi-tensor calls).
template <class Arrays> class Args {
 public:
  using DType = typename Arrays::DType;

  Args() = default;
  explicit Args(DType dt) : dt_(std::move(dt)) {}

  // A required array of `size` elements (size < 0: any); returns its data.
  template <class P = char> P* get(py::handle h, const char* what, int64_t size, bool written) {
    return get<P>(h, what, *dt_, size, written);
  }
  template <class P = char> P* get(py::handle h, const char* what, const DType& dt, int64_t size, bool written) {
    if (h.is_none()) throw py::type_error(std::string(what) + ": expected an array, got None");
    uint64_t bytes = 0;
    void* p = Arrays::check(h, what, dt, size, written, device, bytes);
    keep_.push_back(py::reinterpret_borrow<py::object>(h));
    overlap_.begin(what, written, false);
    overlap_.add(p, bytes, 0);
    return static_cast<P*>(p);
  }

  // Same, but None gives nullptr.
  template <class P = char> P* opt(py::handle h, const char* what, int64_t size, bool written) {
    return h.is_none() ? nullptr : get<P>(h, what, size, written);
  }
  template <class P = char> P* opt(py::handle h, const char* what, const DType& dt, int64_t size, bool written) {
    return h.is_none() ? nullptr : get<P>(h, what, dt, size, written);
  }

  // An array of exactly `shape` (checked after the array itself).
  template <class P = char>
  P* shaped(py::handle h, const char* what, const std::vector<int64_t>& shape, bool written) {
    return shaped<P>(h, what, *dt_, shape, written);
  }
  template <class P = char>
  P* shaped(py::handle h, const char* what, const DType& dt, const std::vector<int64_t>& shape, bool written) {
    P* p = get<P>(h, what, dt, -1, written);
    const auto got = Arrays::shape(h);
    if (got != shape)
      throw py::value_error(std::string(what) + ": expected shape " + shape_str(shape) + ", got " + shape_str(got));
    return p;
  }

  // A list of arrays of the call's dtype (each of sizes[i] elements when `sizes` is given),
  // named `name[i]` in errors: their data and sizes (Arrays::List; Arrays::gather checks them).
  // (Of dtype `dt`: calls whose lists differ in dtype, low-precision steps.)
  auto list(py::handle seq, const char* name, const DType& dt, bool written,
            const std::vector<int64_t>* sizes = nullptr) {
    auto l = Arrays::gather(seq, name, dt, written, device, sizes);
    const uint64_t itemsize = Arrays::itemsize(dt);
    overlap_.begin(name, written, true);
    for (size_t i = 0; i < l.count(); ++i) overlap_.add(l.data[i], uint64_t(l.size[i]) * itemsize, i);
    return l;
  }
  auto list(py::handle seq, const char* name, bool written, const std::vector<int64_t>* sizes = nullptr) {
    return list(seq, name, *dt_, written, sizes);
  }

  // Lists gathered elsewhere (a call's scalar buffers as lists) join the aliasing check.
  template <class L> void also(const NamedArrays<L>& l) {
    if (!l.list) return;
    const uint64_t isz = l.itemsize ? l.itemsize : l.single ? 8 : Arrays::itemsize(*dt_);
    overlap_.begin(l.name, l.written, !l.single);
    for (size_t i = 0; i < l.list->count(); ++i) overlap_.add(l.list->data[i], uint64_t(l.list->size[i]) * isz, i);
  }

  void check_overlap() { overlap_.check(); }

  int device = -1;  // of the first array (host arrays: -1)

 private:
  std::optional<DType> dt_;
  // References that keep the arrays alive while a kernel runs without the GIL.
  std::vector<py::object> keep_;
  OverlapCheck overlap_;
};

}  // namespace optkern
