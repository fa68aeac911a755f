// Shared pieces of the normalization / dropout / random CUDA kernels:
// dtype dispatch on CuPy arrays, half/bfloat16 load-store, launch sizing.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_arrays.hpp"
#include "optkern/byte_spans.hpp"

namespace optkern {
namespace py = pybind11;

// Storage <-> compute conversions: half and bfloat16 compute in float.
template <class T> struct Compute { using type = T; };
template <> struct Compute<__half> { using type = float; };
template <> struct Compute<__nv_bfloat16> { using type = float; };

__device__ __forceinline__ float load(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ double load(const double* p, int64_t i) { return p[i]; }
__device__ __forceinline__ void store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
__device__ __forceinline__ void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(double* p, int64_t i, double v) { p[i] = v; }

// The dtype of a CuPy array, one of `allowed` (bit mask over DType).
constexpr unsigned kFloatAll = 0xF, kFloat3264 = 0xC;
inline DType device_dtype(py::handle h, const char* what, unsigned allowed) {
  if (!is_cupy(h))
    throw py::type_error(std::string(what) + ": expected a cupy.ndarray, got " +
                         py::str(py::type::of(h).attr("__name__")).cast<std::string>());
  const std::string n = cupy_dtype(h);
  const DType all[4] = {DType::f16, DType::bf16, DType::f32, DType::f64};
  for (int k = 0; k < 4; ++k)
    if ((allowed >> k & 1) && n == dtype_str(all[k])) return all[k];
  throw py::type_error(std::string(what) + ": expected " +
                       (allowed == kFloat3264 ? "float32 or float64" : "float16, bfloat16, float32 or float64") +
                       ", got " + n);
}

// Device pointer of a checked CuPy array (expect_size < 0: any size).
template <class T = char>
T* dptr(py::handle h, const std::string& what, DType dt, int64_t expect_size, int& device) {
  return reinterpret_cast<T*>(check_device_array(h, what, dt, true, expect_size, device));
}

// A writable uint8 CuPy array of `expect_size` elements (dropout masks).
inline uint8_t* uint8_ptr(py::handle h, const char* what, int64_t expect_size, int& device) {
  if (!is_cupy(h) || cupy_dtype(h) != "uint8")
    throw py::type_error(std::string(what) + ": expected a uint8 cupy.ndarray");
  if (!h.attr("flags").attr("c_contiguous").cast<bool>())
    throw py::value_error(std::string(what) + ": array must be C-contiguous");
  if (h.attr("size").cast<int64_t>() != expect_size)
    throw py::value_error(std::string(what) + ": expected " + std::to_string(expect_size) + " elements");
  const int dev = h.attr("device").attr("id").cast<int>();
  if (device >= 0 && dev != device)
    throw py::value_error(std::string(what) + ": is on device " + std::to_string(dev) +
                          " but other arrays are on device " + std::to_string(device));
  return reinterpret_cast<uint8_t*>(h.attr("data").attr("ptr").cast<uintptr_t>());
}

inline int64_t device_size(py::handle h) { return h.attr("size").cast<int64_t>(); }

// Call f with a null pointer of the storage type matching dt.
template <class F> void dispatch(DType dt, F&& f) {
  switch (dt) {
    case DType::f16: f(static_cast<__half*>(nullptr)); break;
    case DType::bf16: f(static_cast<__nv_bfloat16*>(nullptr)); break;
    case DType::f32: f(static_cast<float*>(nullptr)); break;
    default: f(static_cast<double*>(nullptr)); break;
  }
}

// Make `device` current for the launch (CuPy arrays carry their device).
struct DeviceGuard {
  int prev = -1;
  explicit DeviceGuard(int dev) {
    if (dev >= 0 && cudaGetDevice(&prev) == cudaSuccess && prev != dev) cudaSetDevice(dev);
    else prev = -1;
  }
  ~DeviceGuard() { if (prev >= 0) cudaSetDevice(prev); }
};

// Checked CuPy arguments of one call: dtype, size, contiguity, one device,
// and no written array overlapping any other (checked before any launch).
class DeviceArgs {
 public:
  template <class P = char>
  P* get(py::handle h, const char* what, DType dt, int64_t size, bool written) {
    if (h.is_none()) throw py::type_error(std::string(what) + ": expected an array, got None");
    char* p = check_device_array(h, what, dt, written, size, device);
    const auto lo = reinterpret_cast<uintptr_t>(p);
    spans_.push_back({what, lo, lo + uintptr_t(h.attr("size").cast<int64_t>()) * dtype_size(dt), written});
    return reinterpret_cast<P*>(p);
  }
  template <class P = char>
  P* opt(py::handle h, const char* what, DType dt, int64_t size, bool written) {
    return h.is_none() ? nullptr : get<P>(h, what, dt, size, written);
  }
  void check_overlap() const { check_disjoint(spans_); }
  int device = -1;

 private:
  std::vector<ByteSpan> spans_;
};

// Statistics dtype for a storage dtype: float64 stays, everything else float32.
inline DType stat_dtype(DType dt) { return dt == DType::f64 ? DType::f64 : DType::f32; }

// Stream-ordered scratch memory, freed on the same stream when it goes out of scope.
class AsyncBuffer {
 public:
  AsyncBuffer(size_t bytes, cudaStream_t s) : s_(s) {
    if (bytes && cudaMallocAsync(&p_, bytes, s) != cudaSuccess) {
      cudaGetLastError();
      throw std::runtime_error("optkern: cudaMallocAsync of " + std::to_string(bytes) + " bytes failed");
    }
  }
  ~AsyncBuffer() { if (p_) cudaFreeAsync(p_, s_); }
  AsyncBuffer(const AsyncBuffer&) = delete;
  AsyncBuffer& operator=(const AsyncBuffer&) = delete;
  template <class P> P* as() const { return static_cast<P*>(p_); }

 private:
  void* p_ = nullptr;
  cudaStream_t s_;
};

inline unsigned grid_for(int64_t work, int threads, int64_t cap = 65535LL * 16) {
  int64_t g = (work + threads - 1) / threads;
  if (g < 1) g = 1;
  return unsigned(g < cap ? g : cap);
}

}  // namespace optkern
