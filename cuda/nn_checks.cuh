// Argument checks shared by the CUDA nn / linalg bindings (cuda/nn.cu,
// cuda/linalg.cu): the same messages as cpp/nn_checks.hpp, on CuPy arrays.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include "cuda_arrays.hpp"
#include "optkern/byte_spans.hpp"

namespace optkern {
namespace nncheck_cuda {

inline std::vector<int64_t> shape_of(py::handle h) { return h.attr("shape").cast<std::vector<int64_t>>(); }

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

inline void expect_shape(py::handle h, const char* name, const std::vector<int64_t>& want) {
  const auto got = shape_of(h);
  if (got != want)
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(want) + ", got " + shape_str(got));
}

// float32 or float64, from the array that fixes the call's dtype.
inline DType float_dtype(py::handle h, const char* name) {
  if (!is_cupy(h))
    throw py::type_error(std::string(name) + ": expected a cupy.ndarray, got " +
                         py::str(py::type::of(h).attr("__name__")).cast<std::string>());
  const std::string d = cupy_dtype(h);
  if (d == "float32") return DType::f32;
  if (d == "float64") return DType::f64;
  throw py::type_error(std::string(name) + ": expected float32 or float64, got " + d);
}

// An int64 CuPy array (labels).
inline const int64_t* int64_array(py::handle h, const char* name, int& device) {
  if (!is_cupy(h))
    throw py::type_error(std::string(name) + ": expected a cupy.ndarray, got " +
                         py::str(py::type::of(h).attr("__name__")).cast<std::string>());
  if (cupy_dtype(h) != "int64") throw py::type_error(std::string(name) + ": expected int64, got " + cupy_dtype(h));
  if (!h.attr("flags").attr("c_contiguous").cast<bool>())
    throw py::value_error(std::string(name) + ": array must be C-contiguous");
  const int dev = h.attr("device").attr("id").cast<int>();
  if (device < 0) device = dev;
  else if (dev != device)
    throw py::value_error(std::string(name) + ": is on device " + std::to_string(dev) +
                          " but other arrays are on device " + std::to_string(device));
  return reinterpret_cast<const int64_t*>(h.attr("data").attr("ptr").cast<uintptr_t>());
}

using Span = ByteSpan;

inline Span span(const char* name, py::handle h, bool written) {
  const auto lo = h.attr("data").attr("ptr").cast<uintptr_t>();
  return {name, lo, lo + h.attr("nbytes").cast<uintptr_t>(), written};
}

inline void no_overlap(const std::vector<Span>& s) { check_disjoint(s); }

}  // namespace nncheck_cuda
}  // namespace optkern
