// Argument checks shared by the nn kernels' bindings (cpp/nn.cpp).
#pragma once
#include <string>
#include <vector>

#include "py_arrays.hpp"

namespace optkern {
namespace nncheck {

// float32 or float64, read from the array that fixes the call's dtype.
inline py::dtype float_dtype(py::handle h, const char* name) {
  if (!py::isinstance<py::array>(h))
    throw py::type_error(std::string(name) + ": expected a numpy.ndarray, got " +
                         py::str(py::type::of(h).attr("__name__")).cast<std::string>());
  auto dt = py::reinterpret_borrow<py::array>(h).dtype();
  if (dt.equal(py::dtype::of<float>()) || dt.equal(py::dtype::of<double>())) return dt;
  throw py::type_error(std::string(name) + ": expected float32 or float64, got " + dtype_name(dt));
}

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

inline std::vector<int64_t> shape_of(const py::array& a) {
  std::vector<int64_t> s;
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s.push_back(int64_t(a.shape(i)));
  return s;
}

inline void expect_shape(const py::array& a, const char* name, const std::vector<int64_t>& want) {
  if (shape_of(a) != want)
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(want) + ", got " +
                          shape_str(shape_of(a)));
}

// The arrays of one call as a no-overlap check sees them.
struct Arg {
  const char* name;
  py::array arr;
  bool written;
};

inline void no_overlap(const std::vector<Arg>& args) {
  std::vector<ArrayList> lists(args.size());
  std::vector<NamedList> named;
  size_t itemsize = 1;
  for (size_t i = 0; i < args.size(); ++i) {
    // check_no_overlap counts elements: express every array in bytes.
    lists[i].data.push_back(static_cast<char*>(const_cast<void*>(args[i].arr.data())));
    lists[i].size.push_back(int64_t(args[i].arr.nbytes()));
  }
  for (size_t i = 0; i < args.size(); ++i) named.push_back({args[i].name, &lists[i], args[i].written});
  check_no_overlap(named, itemsize);
}

}  // namespace nncheck
}  // namespace optkern
