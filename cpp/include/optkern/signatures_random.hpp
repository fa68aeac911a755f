// The Python signatures of dropout_, random_uniform_, random_rademacher_ and philox4x32_10, which
// optkern._cpu (cpp/dropout.cpp, cpp/random.cpp) and optkern._cuda (cuda/dropout.cu) both export:
// names, argument names, defaults, docstrings and the scalar checks written once, so the two modules
// cannot drift apart (they did: a stale dropout_ docstring sat in both copies). A header of its own
// rather than signatures.hpp because philox4x32_10 needs pybind11/stl.h, which would change how
// std::vector / std::array arguments convert in every other file including signatures.hpp.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <string>

#include "optkern/philox.hpp"
#include "optkern/named_reals.hpp"

namespace optkern {
namespace sig {
namespace py = pybind11;
using py::arg;

// dropout_'s p, checked before any array is looked at (the threshold and scale need p in [0, 1]).
inline void check_dropout_p(double p) {
  if (!(p >= 0.0 && p <= 1.0)) throw py::value_error("p: must be in [0, 1], got " + checks::repr(p));
}

// Dropout: `dropout_(x, out, p, seed, offset, mask)` of each module (its arrays' checks and the loop).
template <class Dropout> void dropout(py::module_& m, Dropout dropout_fn) {
  def_named(m, "dropout_", dropout_fn, arg("x"), arg("out"), arg("p"), arg("seed"), arg("offset"), arg("mask") = py::none(),
        "out = x * keep / (1 - p), keep = Philox word(offset + i) >= round(p * 2**32) (philox.hpp); out may be x.");
}

// The host Philox of philox.hpp (the code the kernels run), for the known-answer tests of both modules.
inline std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  const philox::U4 r = philox::philox4x32_10({c[0], c[1], c[2], c[3]}, k[0], k[1]);
  return {r.x, r.y, r.z, r.w};
}

// The in-place fills `f(out, seed, offset)` of each module, and the raw generator.
template <class Uniform, class Rademacher> void random(py::module_& m, Uniform uniform_fn, Rademacher rademacher_fn) {
  def_named(m, "random_uniform_", uniform_fn, arg("out"), arg("seed"), arg("offset"),
        "Fill float32/float64 `out` with Philox4x32-10 uniforms in [0, 1) (see philox.hpp).");
  def_named(m, "random_rademacher_", rademacher_fn, arg("out"), arg("seed"), arg("offset"),
        "Fill float32/float64 `out` with Philox4x32-10 Rademacher signs (+1/-1).");
  def_named(m, "philox4x32_10", &philox4x32_10, arg("counter"), arg("key"),
        "Raw Philox4x32-10 of a 128-bit counter and 64-bit key (for known-answer tests).");
}

}  // namespace sig
}  // namespace optkern
