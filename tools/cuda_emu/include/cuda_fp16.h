// CUDA on the CPU (see cuda_runtime.h): IEEE binary16 storage and its conversions,
// round to nearest even, as the device's __float2half_rn / __half2float.
#pragma once
#include "cuda_runtime.h"

struct __half {
  uint16_t bits;
};

inline float __half2float(__half h) {
  _Float16 y;
  std::memcpy(&y, &h.bits, 2);
  return float(y);
}
inline __half __float2half_rn(float x) {
  const _Float16 y = _Float16(x);  // GCC's conversion rounds to nearest even
  __half h;
  std::memcpy(&h.bits, &y, 2);
  return h;
}
