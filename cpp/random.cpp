// optkern._cpu.random_uniform_ / random_rademacher_: fill an array in place
// from the Philox4x32-10 stream (seed, offset); element mapping in philox.hpp.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <utility>

#include "philox_cpu.hpp"
#include "py_arrays.hpp"

namespace optkern {
namespace py = pybind11;

namespace {

// out as a writable float32 / float64 array (TypeError / ValueError naming `what`).
py::array float_out(py::handle h, const char* what) {
  if (!py::isinstance<py::array>(h))
    throw py::type_error(std::string(what) + ": expected a numpy.ndarray, got " +
                         py::str(py::type::of(h).attr("__name__")).cast<std::string>());
  const auto dt = py::reinterpret_borrow<py::array>(h).dtype();
  if (dt.equal(py::dtype::of<float>())) return check_array(h, what, py::dtype::of<float>(), true);
  if (dt.equal(py::dtype::of<double>())) return check_array(h, what, py::dtype::of<double>(), true);
  throw py::type_error(std::string(what) + ": expected float32 or float64, got " + dtype_name(dt));
}

// `out` checked (float_out, and its counter range from `offset`), read while the GIL is held.
struct FillTarget {
  py::array out;  // (keeps the array alive while the GIL is released)
  void* p;
  int64_t n;
  bool single;  // float32, else float64
};

FillTarget fill_target(py::handle out_h, uint64_t offset) {
  py::array out = float_out(out_h, "out");
  const int64_t n = int64_t(out.size());
  check_philox_counter(n, offset);
  void* p = out.mutable_data();
  const bool single = out.itemsize() == 4;  // itemsize() reads the dtype object: with the GIL held
  return {std::move(out), p, n, single};
}

void uniform_(py::handle out_h, uint64_t seed, uint64_t offset) {
  const FillTarget t = fill_target(out_h, offset);
  py::gil_scoped_release nogil;
  if (t.single) {
    float* o = static_cast<float*>(t.p);
    philox::parallel_words(t.n, offset, seed, 0, 1, [&](int64_t a, const uint32_t* w, int64_t m) {
      for (int64_t j = 0; j < m; ++j) o[a + j] = philox::to_float(w[j]);
    });
  } else {
    double* o = static_cast<double*>(t.p);
    philox::parallel_words(t.n, offset, seed, 0, 2, [&](int64_t a, const uint32_t* w, int64_t m) {
      for (int64_t j = 0; j < m; ++j) o[a + j] = philox::to_double(w[2 * j], w[2 * j + 1]);
    });
  }
}

template <class T> void signs(T* o, int64_t n, uint64_t seed, uint64_t offset) {
  philox::parallel_words(n, offset, seed, 0, 1, [&](int64_t a, const uint32_t* w, int64_t m) {
    for (int64_t j = 0; j < m; ++j) o[a + j] = philox::to_sign<T>(w[j]);
  });
}

void rademacher_(py::handle out_h, uint64_t seed, uint64_t offset) {
  const FillTarget t = fill_target(out_h, offset);
  py::gil_scoped_release nogil;
  if (t.single) signs(static_cast<float*>(t.p), t.n, seed, offset);
  else signs(static_cast<double*>(t.p), t.n, seed, offset);
}

}  // namespace

void register_random(py::module_& m) {
  m.def("random_uniform_", &uniform_, py::arg("out"), py::arg("seed"), py::arg("offset"),
        "Fill float32/float64 `out` with Philox4x32-10 uniforms in [0, 1) (see philox.hpp).");
  m.def("random_rademacher_", &rademacher_, py::arg("out"), py::arg("seed"), py::arg("offset"),
        "Fill float32/float64 `out` with Philox4x32-10 Rademacher signs (+1/-1).");
  m.def("philox4x32_10", [](std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
          const auto r = philox::philox4x32_10({c[0], c[1], c[2], c[3]}, k[0], k[1]);
          return std::array<uint32_t, 4>{r.x, r.y, r.z, r.w};
        }, py::arg("counter"), py::arg("key"),
        "Raw Philox4x32-10 of a 128-bit counter and 64-bit key (for known-answer tests).");
}

}  // namespace optkern
