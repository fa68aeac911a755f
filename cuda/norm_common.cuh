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

// Statistics dtype for a storage dtype: float64 stays, everything else float32.
inline DType stat_dtype(DType dt) { return dt == DType::f64 ? DType::f64 : DType::f32; }

inline unsigned grid_for(int64_t work, int threads, int64_t cap = 65535LL * 16) {
  int64_t g = (work + threads - 1) / threads;
  if (g < 1) g = 1;
  return unsigned(g < cap ? g : cap);
}

}  // namespace optkern
