// Argument checks shared by the normalization bindings (cpp/norm_*.cpp):
// each array is checked for dtype, contiguity, writability and size, and
// written arrays for overlap with any other, before the first write.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "optkern/byte_spans.hpp"
#include "py_arrays.hpp"

namespace optkern {
namespace normargs {
namespace py = pybind11;

// The dtype of `x`: float32 or float64, else TypeError.
inline py::dtype float_dtype(py::handle x, const char* what) {
  if (!py::isinstance<py::array>(x))
    throw py::type_error(std::string(what) + ": expected a numpy.ndarray, got " +
                         py::str(py::type::of(x).attr("__name__")).cast<std::string>());
  const auto dt = py::reinterpret_borrow<py::array>(x).dtype();
  if (!dt.equal(py::dtype::of<float>()) && !dt.equal(py::dtype::of<double>()))
    throw py::type_error(std::string(what) + ": expected float32 or float64, got " + dtype_name(dt));
  return dt;
}

// Collects checked arrays of one call and their roles for the overlap check.
class Args {
 public:
  explicit Args(py::dtype dt) : dt_(std::move(dt)) {}

  // A required array of `size` elements (size < 0: any); returns its data.
  template <class T> T* get(py::handle h, const char* what, int64_t size, bool written) {
    if (h.is_none()) throw py::type_error(std::string(what) + ": expected an array, got None");
    py::array a = check_array(h, what, dt_, written);
    if (size >= 0 && int64_t(a.size()) != size)
      throw py::value_error(std::string(what) + ": expected " + std::to_string(size) + " elements, got " +
                            std::to_string(a.size()));
    keep_.push_back(a);
    const auto lo = reinterpret_cast<uintptr_t>(a.data());
    spans_.push_back({what, lo, lo + uintptr_t(a.nbytes()), written});
    return reinterpret_cast<T*>(const_cast<void*>(a.data()));
  }

  // Same, but None gives nullptr.
  template <class T> T* opt(py::handle h, const char* what, int64_t size, bool written) {
    return h.is_none() ? nullptr : get<T>(h, what, size, written);
  }

  // Raise if a written array shares memory with any other.
  void check_overlap() const { check_disjoint(spans_); }

 private:
  py::dtype dt_;
  std::vector<py::array> keep_;
  std::vector<ByteSpan> spans_;
};

}  // namespace normargs
}  // namespace optkern
