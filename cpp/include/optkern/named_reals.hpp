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
// signatures and stubs are unchanged (a Real shows as a float, an Int as an int).
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace named {
namespace py = pybind11;

template <class A> inline constexpr bool kInteger = std::is_integral_v<A> && !std::is_same_v<A, bool>;
template <class A> struct IntegerList : std::false_type {};
template <class T> struct IntegerList<std::vector<T>> : std::bool_constant<kInteger<T>> {};

// The type a parameter of type A is bound as: a real, an integer (or a list of either) lifted, else A.
template <class A, class D = std::decay_t<A>> using Lift = std::conditional_t<
    std::is_same_v<D, double>, const checks::Real&,
    std::conditional_t<std::is_same_v<D, std::vector<double>>, const std::vector<checks::Real>&,
                       std::conditional_t<kInteger<D>, const checks::Int&,
                                          std::conditional_t<IntegerList<D>::value,
                                                             const std::vector<checks::Int>&, A>>>>;

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
