// def_named: m.def for the native functions whose real arguments are plain `double`s (norms' eps,
// CG's alpha, L-BFGS's g_scale and coefficient lists, cross-entropy's scalars, ...), shared by
// optkern._cpu and optkern._cuda. pybind11's double caster refused a str or None with its generic
// "incompatible function arguments" TypeError, naming no argument, and took True as 1.0. Here every
// `double` parameter is bound as a checks::Real (and a std::vector<double> as a list of them) and
// converted by checks::real under the name its py::arg gives it, before the function runs: the
// TypeError names the argument, as the optimizer steps' do (signatures_optim.hpp). The range checks
// stay the function's (checks::check_real); signatures and stubs are unchanged (a Real shows as a float).
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

// The type a parameter of type A is bound as: a real (or a list of reals) as given, else A.
template <class A> using Lift = std::conditional_t<
    std::is_same_v<std::decay_t<A>, double>, const checks::Real&,
    std::conditional_t<std::is_same_v<std::decay_t<A>, std::vector<double>>, const std::vector<checks::Real>&, A>>;

// A bound argument as the function takes it.
template <class T> T&& lower(T&& v, const char*) { return std::forward<T>(v); }
inline double lower(const checks::Real& r, const char* name) { return checks::real(r, name); }
inline std::vector<double> lower(const std::vector<checks::Real>& rs, const char* name) {
  std::vector<double> out(rs.size());
  for (size_t i = 0; i < rs.size(); ++i) out[i] = checks::real(rs[i], [&] { return item_name(name, i); });
  return out;
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
      name, [f, names](Lift<A>... a) -> R { return f(lower(a, names[I])...); }, extra...);
}

}  // namespace named

// m.def(name, f, extra...) with f's real parameters converted by name (see above); `extra` names
// every parameter with a py::arg.
template <class F, class... Extra> void def_named(pybind11::module_& m, const char* name, F f, const Extra&... extra) {
  using S = typename named::SigOf<F>::type;
  named::def(m, name, f, static_cast<S*>(nullptr), std::make_index_sequence<std::tuple_size_v<S> - 1>(), extra...);
}

}  // namespace optkern
