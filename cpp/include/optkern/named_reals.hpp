// def_named: m.def for the native functions whose real and integer arguments are plain C types
// (norms' eps, CG's alpha, L-BFGS's g_scale and coefficient lists, cross-entropy's scalars; seeds,
// offsets, block sizes, row and channel counts, k, passes, ...), shared by optkern._cpu and
// optkern._cuda. pybind11's double caster refused a str or None with its generic "incompatible
// function arguments" TypeError, naming no argument, and took True as 1.0; its integer casters did
// the same with a float, a NumPy float or a value past the C type, and took True as 1. Here every
// `double` parameter is bound as a checks::Real (a std::vector<double> as a list of them) and every
// integer one (bool aside) as a checks::Int (a vector as a list), converted by checks::real /
// checks::integer under the name its py::arg gives it, before the function runs: the TypeError
// (ValueError for an integer outside its C type) names the argument, as the optimizer steps' do
// (signatures_optim.hpp). The range checks stay the function's (checks::check_real, k >= 0, ...);
// signatures and stubs are unchanged (a Real shows as a float, an Int as an int). A fixed-size
// integer list (std::array, philox4x32_10's counter and key) is a checks::IntArray: its length and
// each item checked by name (`counter[2]`), where pybind11's std::array caster refused a wrong
// length, an item past the C type, a float or None unnamed.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace checks {

// A fixed-size list of integers as given (see the caster below): philox4x32_10's counter (4 words) and
// key (2 words), which pybind11's std::array caster refused unnamed ("incompatible function arguments")
// for a wrong length, a float, None or a word past uint32, and took True as 1.
template <size_t N> struct IntArray {
  py::object given;
};

// `a` as N values of T: a sequence (not a str or bytes: pybind11 took neither) of exactly N items,
// each converted as `integer` converts one, under the name `name[i]`; TypeError / ValueError naming
// the argument (or the item) otherwise.
template <class T, size_t N> std::array<T, N> int_array(const IntArray<N>& a, const char* name) {
  PyObject* o = a.given.ptr();
  if (!PySequence_Check(o) || PyUnicode_Check(o) || PyBytes_Check(o))
    throw py::type_error(std::string(name) + ": expected a list of " + std::to_string(N) + " integers, got " +
                         type_name(a.given));
  const auto seq = py::reinterpret_borrow<py::sequence>(a.given);
  const size_t n = py::len(seq);
  if (n != N)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(N) + " integers, got " +
                          std::to_string(n));
  std::array<T, N> out{};
  for (size_t i = 0; i < N; ++i) out[i] = integer<T>(Int{seq[i]}, [&] { return item_name(name, i); });
  return out;
}

}  // namespace checks
}  // namespace optkern

namespace pybind11 {
namespace detail {
// An IntArray takes any object (shown as pybind11 shows a std::array of integers, so signatures and
// stubs stay as they were); checks::int_array converts it, naming the argument and each item.
template <size_t N> struct type_caster<optkern::checks::IntArray<N>> {
  using Shown = std::array<int64_t, N>;
  PYBIND11_TYPE_CASTER(optkern::checks::IntArray<N>, make_caster<Shown>::name);
  bool load(handle src, bool) {
    value.given = reinterpret_borrow<object>(src);
    return true;
  }
  static handle cast(const optkern::checks::IntArray<N>& a, return_value_policy, handle) { return a.given.inc_ref(); }
};
}  // namespace detail
}  // namespace pybind11

namespace optkern {
namespace named {
namespace py = pybind11;

template <class A> inline constexpr bool kInteger = std::is_integral_v<A> && !std::is_same_v<A, bool>;
template <class A> struct IntegerList : std::false_type {};
template <class T> struct IntegerList<std::vector<T>> : std::bool_constant<kInteger<T>> {};
template <class A> struct IntegerArray : std::false_type {};  // (std::array<integer, N>: its Lift is IntArray<N>)
template <class T, size_t N> struct IntegerArray<std::array<T, N>> : std::bool_constant<kInteger<T>> {
  static constexpr size_t size = N;
};
// A parameter of type A (decayed: D) bound as an IntArray where D is an integer std::array, else as A itself.
template <class A, class D, bool = IntegerArray<D>::value> struct ArrayLift {
  using type = A;
};
template <class A, class D> struct ArrayLift<A, D, true> {
  using type = const checks::IntArray<IntegerArray<D>::size>&;
};

// The type a parameter of type A is bound as: a real, an integer (or a list of either) lifted, else A.
template <class A, class D = std::decay_t<A>> using Lift = std::conditional_t<
    std::is_same_v<D, double>, const checks::Real&,
    std::conditional_t<std::is_same_v<D, std::vector<double>>, const std::vector<checks::Real>&,
                       std::conditional_t<kInteger<D>, const checks::Int&,
                                          std::conditional_t<IntegerList<D>::value, const std::vector<checks::Int>&,
                                                             typename ArrayLift<A, D>::type>>>>;

// A bound argument `v` as the function takes it (a parameter of type A).
template <class A, class B> decltype(auto) lower(B&& v, const char* name) {
  using D = std::decay_t<A>;
  if constexpr (std::is_same_v<D, double>) {
    return checks::real(v, name);
  } else if constexpr (std::is_same_v<D, std::vector<double>>) {
    std::vector<double> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = checks::real(v[i], [&] { return item_name(name, i); });
    return out;
  } else if constexpr (kInteger<D>) {
    return checks::integer<D>(v, name);
  } else if constexpr (IntegerList<D>::value) {
    D out(v.size());
    for (size_t i = 0; i < v.size(); ++i)
      out[i] = checks::integer<typename D::value_type>(v[i], [&] { return item_name(name, i); });
    return out;
  } else if constexpr (IntegerArray<D>::value) {
    return checks::int_array<typename D::value_type>(v, name);
  } else {
    return std::forward<B>(v);
  }
}

// A callable's return and parameter types: a function pointer or a lambda (not a generic one).
template <class S> struct Sig;
template <class R, class... A> struct Sig<R (*)(A...)> {
  using type = std::tuple<R, A...>;
};
template <class C, class R, class... A> struct Sig<R (C::*)(A...) const> {
  using type = std::tuple<R, A...>;
};
template <class F> struct SigOf : Sig<decltype(&F::operator())> {};
template <class R, class... A> struct SigOf<R (*)(A...)> : Sig<R (*)(A...)> {};

// The names of the py::arg (and py::arg_v, a default's) among `extra`, in order.
template <class... Extra> std::vector<const char*> arg_names(const Extra&... extra) {
  std::vector<const char*> out;
  const auto add = [&out](const auto& e) {
    if constexpr (std::is_base_of_v<py::arg, std::decay_t<decltype(e)>>) out.push_back(e.name);
  };
  (add(extra), ...);
  return out;
}

template <class F, class R, class... A, size_t... I, class... Extra>
void def(py::module_& m, const char* name, F f, std::tuple<R, A...>*, std::index_sequence<I...>,
         const Extra&... extra) {
  const std::vector<const char*> names = arg_names(extra...);
  if (names.size() != sizeof...(A))  // (a misdeclared binding: caught at import, by every test)
    throw std::logic_error(std::string(name) + ": def_named needs one py::arg per parameter");
  m.def(
      name, [f, names](Lift<A>... a) -> R { return f(lower<A>(a, names[I])...); }, extra...);
}

}  // namespace named

// m.def(name, f, extra...) with f's real and integer parameters converted by name (see above); `extra` names
// every parameter with a py::arg.
template <class F, class... Extra> void def_named(pybind11::module_& m, const char* name, F f, const Extra&... extra) {
  using S = typename named::SigOf<F>::type;
  named::def(m, name, f, static_cast<S*>(nullptr), std::make_index_sequence<std::tuple_size_v<S> - 1>(), extra...);
}

}  // namespace optkern
