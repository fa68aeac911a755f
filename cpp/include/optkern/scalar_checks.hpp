// Checks of the scalar arguments of native calls, shared by optkern._cpu and optkern._cuda: the
// native modules are public, and a direct call with lr = NaN, a beta of 1 or eps = 0 wrote NaN
// into every param (only the Python layer checked them). The messages are the Python layer's
// (optkern/_scalars.py: `real`, `in_range`), so a value refused there and here reads the same.
#pragma once
#include <pybind11/gil_safe_call_once.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "optkern/call_args.hpp"
#include "optkern/ranges.hpp"

namespace optkern {
namespace checks {
namespace py = pybind11;

inline std::string repr(double v) { return py::repr(py::float_(v)).cast<std::string>(); }

// A name given as a string, or as a function that makes it (built only for an error message).
template <class Name> std::string name_of(const Name& name) {
  if constexpr (std::is_invocable_v<const Name&>) return name();
  else return std::string(name);
}

// ValueError naming `name` unless `v` is finite and in `r` (the Python layer's in_range message).
template <class Name> void check_real(const Name& name, double v, const Range& r) {
  if (within(v, r)) return;
  if (!finite(v)) throw py::value_error(name_of(name) + ": must be finite, got " + repr(v));
  throw py::value_error(name_of(name) + ": must be in " + (r.lo_open ? "(" : "[") + repr(r.lo) + ", " + repr(r.hi) +
                        (r.hi_open ? ")" : "]") + ", got " + repr(v));
}

// ValueError naming `name` unless `v` is a step count (is_step: an integer in [1, 2**53]).
inline void check_step(const char* name, double v) {
  if (!is_step(v)) throw py::value_error(std::string(name) + ": must be an integer in [1, 2**53], got " + repr(v));
}

// A bool argument as given (see the caster below): pybind11's bool conversion read None as False
// and any int, 2 or -1, as True (`amsgrad=None` ran plain Adam; `nesterov=2` ran Nesterov).
struct Flag {
  py::object given;
};

// NumPy's bool type, looked up once per module: compared by identity, as a type's name (any class
// may call itself "numpy.bool") let a stranger's __bool__ decide.
inline PyTypeObject* numpy_bool_type() {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> type;
  return reinterpret_cast<PyTypeObject*>(
      type.call_once_and_store_result([] { return py::module_::import("numpy").attr("bool_"); }).get_stored().ptr());
}

// `f` as a bool: True, False or a NumPy bool; anything else a TypeError naming `name`.
template <class Name> bool flag(const Flag& f, const Name& name) {
  PyObject* o = f.given.ptr();
  if (o == Py_True) return true;
  if (o == Py_False) return false;
  if (Py_TYPE(o) == numpy_bool_type()) {
    const int v = PyObject_IsTrue(o);
    if (v < 0) throw py::error_already_set();  // (the error raised, not a False with it left set)
    return v == 1;
  }
  throw py::type_error(name_of(name) + ": expected a bool, got " + type_name(f.given));
}

// A real argument as given (see the caster below): pybind11's double caster refused a str or None
// with its generic "incompatible function arguments" TypeError, which names no argument.
struct Real {
  py::object given;
};

// `r` as a double, as pybind11's double conversion takes it, but a bool (True read as 1.0) or a
// non-number a TypeError naming `name`, and an int beyond float range a ValueError naming it: the
// messages of the Python layer's check (optkern/_scalars.py: `real`). The range is the caller's.
template <class Name> double real(const Real& r, const Name& name) {
  PyObject* o = r.given.ptr();
  if (PyFloat_CheckExact(o)) return PyFloat_AS_DOUBLE(o);  // (the common case, first)
  if (PyBool_Check(o) || Py_TYPE(o) == numpy_bool_type())
    throw py::type_error(name_of(name) + ": expected a real number, got bool");
  if (PyLong_Check(o)) {
    const double v = PyLong_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {  // (OverflowError: the only error an int raises here)
      PyErr_Clear();
      throw py::value_error(name_of(name) + ": must be finite, got an integer beyond float range");
    }
    return v;
  }
  py::detail::make_caster<double> c;
  if (c.load(r.given, true)) return py::detail::cast_op<double>(c);
  throw py::type_error(name_of(name) + ": expected a real number, got " + type_name(r.given));
}

// An integer argument as given (see the caster below): pybind11's integer casters refused a float,
// a NumPy float or an int past the C type with their generic "incompatible function arguments"
// TypeError, naming no argument, and took True as 1 (a seed, a block size, a row count).
struct Int {
  py::object given;
};

// `i` as a T (an integer C type), as the Python layer's check takes it (optkern/_scalars.py:
// `integer`, the same messages): an int or anything with __index__ (a NumPy integer); a bool, as
// there, or a non-integer (a float, integral or not: pybind11 refused those too) a TypeError
// naming `name`; a value outside T's range a ValueError naming it, before the function runs. The
// range the function needs (>= 1, <= a size) stays the function's.
template <class T, class Name> T integer(const Int& i, const Name& name) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool> && sizeof(T) <= sizeof(long long));
  PyObject* o = i.given.ptr();
  if (PyBool_Check(o) || Py_TYPE(o) == numpy_bool_type())
    throw py::type_error(name_of(name) + ": expected an integer, got bool");
  py::object v = i.given;
  if (!PyLong_Check(o)) {
    if (!PyIndex_Check(o)) throw py::type_error(name_of(name) + ": expected an integer, got " + type_name(i.given));
    v = py::reinterpret_steal<py::object>(PyNumber_Index(o));
    if (!v) {  // (a float 0-d array or tensor has __index__ and refuses: name the argument, as for a float)
      PyErr_Clear();
      throw py::type_error(name_of(name) + ": expected an integer, got " + type_name(i.given));
    }
  }
  using L = std::numeric_limits<T>;
  const auto out_of_range = [&](bool below) {
    const std::string bound = below ? std::to_string(L::min()) : std::to_string(L::max());
    return py::value_error(name_of(name) + ": must be " + (below ? ">= " : "<= ") + bound + ", got " +
                           py::repr(v).cast<std::string>());
  };
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
  if (x == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (overflow < 0 || (overflow == 0 && std::is_unsigned_v<T> && x < 0)) throw out_of_range(true);
  if (overflow > 0) {  // (past long long: only an unsigned 64-bit T may still hold it)
    if constexpr (std::is_unsigned_v<T> && sizeof(T) == sizeof(unsigned long long)) {
      const unsigned long long u = PyLong_AsUnsignedLongLong(v.ptr());
      if (!(u == static_cast<unsigned long long>(-1) && PyErr_Occurred())) return T(u);
      PyErr_Clear();
    }
    throw out_of_range(false);
  }
  if constexpr (std::is_signed_v<T>) {
    if (x < static_cast<long long>(L::min())) throw out_of_range(true);
    if (x > static_cast<long long>(L::max())) throw out_of_range(false);
  } else if (static_cast<unsigned long long>(x) > static_cast<unsigned long long>(L::max())) {
    throw out_of_range(false);
  }
  return T(x);
}

// A real argument's whole check: `r` converted by name (real) and in `range` (check_real).
template <class Name> double real_in(const Name& name, const Real& r, const Range& range) {
  const double v = real(r, name);
  check_real(name, v, range);
  return v;
}

}  // namespace checks
}  // namespace optkern

namespace pybind11 {
namespace detail {
// A Flag takes any object (shown as `bool` in signatures and stubs); the function that receives it
// converts it with checks::flag, which names the argument: a caster cannot (pybind11's refusal
// names none: "incompatible function arguments").
template <> struct type_caster<optkern::checks::Flag> {
  PYBIND11_TYPE_CASTER(optkern::checks::Flag, const_name("bool"));
  bool load(handle src, bool) {
    value.given = reinterpret_borrow<object>(src);
    return true;
  }
  static handle cast(const optkern::checks::Flag& f, return_value_policy, handle) { return f.given.inc_ref(); }
};
// A Real takes any object (shown as pybind11 shows a double, so signatures and stubs stay as they
// were); checks::real converts it, naming the argument.
template <> struct type_caster<optkern::checks::Real> {
  PYBIND11_TYPE_CASTER(optkern::checks::Real, make_caster<double>::name);
  bool load(handle src, bool) {
    value.given = reinterpret_borrow<object>(src);
    return true;
  }
  static handle cast(const optkern::checks::Real& r, return_value_policy, handle) { return r.given.inc_ref(); }
};
// An Int takes any object (shown as pybind11 shows an integer, so signatures and stubs stay as they
// were); checks::integer converts it to the function's integer type, naming the argument.
template <> struct type_caster<optkern::checks::Int> {
  PYBIND11_TYPE_CASTER(optkern::checks::Int, make_caster<int64_t>::name);
  bool load(handle src, bool) {
    value.given = reinterpret_borrow<object>(src);
    return true;
  }
  static handle cast(const optkern::checks::Int& i, return_value_policy, handle) { return i.given.inc_ref(); }
};
}  // namespace detail
}  // namespace pybind11
