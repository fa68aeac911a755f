// Turning Python lists of CuPy arrays into device pointers, after checking
// dtype, contiguity, size and device. Failures raise Python exceptions naming
// the argument and index, before any kernel is launched. Work goes to CuPy's
// current stream.
#pragma once
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace optkern {
namespace py = pybind11;

enum class DType { f16, bf16, f32, f64 };

inline const char* dtype_str(DType d) {
  switch (d) {
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::f32: return "float32";
    default: return "float64";
  }
}

inline size_t dtype_size(DType d) {
  return d == DType::f64 ? 8 : d == DType::f32 ? 4 : 2;
}

struct DeviceList {
  std::vector<char*> data;
  std::vector<int64_t> size;
  int device = -1;
  size_t count() const { return data.size(); }
  template <class T> T* ptr(size_t i) const { return reinterpret_cast<T*>(data[i]); }
};

inline std::string item_name(const char* name, size_t i) {
  return std::string(name) + "[" + std::to_string(i) + "]";
}

inline bool is_cupy(py::handle h) {
  auto t = py::type::of(h);
  return py::str(t.attr("__module__")).cast<std::string>().rfind("cupy", 0) == 0 &&
         py::str(t.attr("__name__")).cast<std::string>() == "ndarray";
}

// dtype of a CuPy array by name ("float32", ...).
inline std::string cupy_dtype(py::handle a) { return py::str(a.attr("dtype").attr("name")).cast<std::string>(); }

// One CuPy array; returns its device pointer. `device` < 0 means "any", and
// is set from the first array seen.
inline char* check_device_array(py::handle h, const std::string& what, DType dt, bool writable,
                                int64_t expect_size, int& device) {
  (void)writable;  // CuPy arrays have no read-only flag.
  if (!is_cupy(h))
    throw py::type_error(what + ": expected a cupy.ndarray, got " +
                         py::str(py::type::of(h).attr("__name__")).cast<std::string>());
  const std::string got = cupy_dtype(h);
  if (got != dtype_str(dt))
    throw py::type_error(what + ": expected " + std::string(dtype_str(dt)) + ", got " + got);
  if (!h.attr("flags").attr("c_contiguous").cast<bool>())
    throw py::value_error(what + ": array must be C-contiguous");
  const int64_t n = h.attr("size").cast<int64_t>();
  if (expect_size >= 0 && n != expect_size)
    throw py::value_error(what + ": expected " + std::to_string(expect_size) + " elements, got " +
                          std::to_string(n));
  const int dev = h.attr("device").attr("id").cast<int>();
  if (device < 0) device = dev;
  else if (dev != device)
    throw py::value_error(what + ": is on device " + std::to_string(dev) + " but other arrays are on device " +
                          std::to_string(device));
  const auto ptr = h.attr("data").attr("ptr").cast<uintptr_t>();
  if (ptr % dtype_size(dt) != 0) throw py::value_error(what + ": array data is misaligned");
  return reinterpret_cast<char*>(ptr);
}

inline DeviceList gather_device(py::handle seq, const char* name, DType dt, bool writable, int& device,
                                const std::vector<int64_t>* sizes = nullptr) {
  if (!py::isinstance<py::sequence>(seq) || py::isinstance<py::str>(seq))
    throw py::type_error(std::string(name) + ": expected a list of arrays");
  auto s = py::reinterpret_borrow<py::sequence>(seq);
  const size_t n = size_t(py::len(s));
  if (sizes && n != sizes->size())
    throw py::value_error(std::string(name) + ": expected " + std::to_string(sizes->size()) +
                          " arrays, got " + std::to_string(n));
  DeviceList out;
  for (size_t i = 0; i < n; ++i) {
    py::handle a = s[i];
    out.data.push_back(check_device_array(a, item_name(name, i), dt, writable, sizes ? (*sizes)[i] : -1, device));
    out.size.push_back(a.attr("size").cast<int64_t>());
  }
  out.device = device;
  return out;
}

// CuPy's current stream on the current device.
inline cudaStream_t current_stream() {
  static py::object get = py::module_::import("cupy.cuda").attr("get_current_stream");
  return reinterpret_cast<cudaStream_t>(get().attr("ptr").cast<uintptr_t>());
}

// Raise a Python RuntimeError if the last launch failed.
inline void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": CUDA error: " + cudaGetErrorString(e));
}

}  // namespace optkern
