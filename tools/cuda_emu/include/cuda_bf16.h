// CUDA on the CPU (see cuda_runtime.h): bfloat16 storage and its conversions, round to
// nearest even (NaN stays a quiet NaN), as the device's __float2bfloat16_rn / __bfloat162float.
#pragma once
#include "cuda_runtime.h"

struct __nv_bfloat16 {
  uint16_t bits;
};

inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float(uint32_t(h.bits) << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float x) {
  const uint32_t u = __float_as_uint(x);
  __nv_bfloat16 h;
  if ((u & 0x7fffffffu) > 0x7f800000u) h.bits = uint16_t((u >> 16) | 0x40u);  // NaN: quiet
  else h.bits = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  return h;
}
