// optkern._cpu.random_uniform_ / random_rademacher_: fill an array in place
// from the Philox4x32-10 stream (seed, offset); element mapping in philox.hpp.
#include <pybind11/pybind11.h>

#include <utility>

#include "optkern/signatures_random.hpp"
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

void register_random(py::module_& m) { sig::random(m, &uniform_, &rademacher_); }

}  // namespace optkern
