// Dynamic loss scaling (torch.amp.GradScaler), written once for the CPU loops (cpp/amp.cpp,
// cpp/lowp_loop.hpp) and the CUDA kernels (cuda/amp.cu, cuda/lowp_step.cu): the unscale factor, the non-finite test
// of the unscale pass (torch's _amp_foreach_non_finite_check_and_unscale_) and the scale's
// update after a step (torch's _amp_update_scale_). The scale is float32, as torch keeps it.
#pragma once
#include <cstdint>

#include "optkern/common.hpp"

namespace optkern {
namespace rules {

// 1 / scale in double, rounded once to float32 (torch: scale.double().reciprocal().float()).
OK_HD float inv_scale(float scale) { return float(1.0 / double(scale)); }

// a * b rounded to float32 on its own on the device as well, where nvcc could otherwise fuse
// the product into an add that reads it (the CPU code stores it, rounded, before any add).
OK_HD float product_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

// A gradient unscaled: g * inv, one rounding (a half grad is unscaled inside the low-precision
// step, where the product would otherwise fuse into the rule's first add).
OK_HD float unscale(float g, float inv) { return product_rn(g, inv); }

// inf or NaN: inf - inf and NaN - NaN are NaN, any finite g - g is 0.
OK_HD bool nonfinite(float g) { return !(g - g == 0.0f); }

// After a step: back off (and restart the count) when a gradient was non-finite, no lower than the
// smallest scale whose unscale factor inv_scale is finite; otherwise count the clean step and grow
// after `interval` of them, unless the grown scale overflows. As torch's kernels: the float32
// scale times the double factor, rounded once to float32 (a factor rounded to float32 first, 0.9
// or 1.1 say, drifts from torch's scales within steps). torch's backoff goes on below that floor
// (0 after ~166 overflowing steps from 2^16): every finite gradient then unscales to inf (0 to
// NaN) while found_inf, which tests the grads read, stays clear, and the next step writes them
// into the params; here the scale stops at the floor (init_scale and new_scale refuse below it).
OK_HD void update_scale(float& scale, int64_t& tracker, bool found_inf, double growth, double backoff,
                        int64_t interval) {
  if (found_inf) {
    constexpr float kMinScale = 0x1.000008p-128f;  // 2^-128 (1 + 2^-21): 1 / it rounds below inf
    const float backed = float(double(scale) * backoff);
    scale = backed < kMinScale ? kMinScale : backed;
    tracker = 0;
    return;
  }
  // (saturating: a loaded count can be INT64_MAX, and tracker + 1 would overflow into a negative
  // count that the next checkpoint could not load)
  const int64_t successful = tracker == INT64_MAX ? tracker : tracker + 1;
  if (successful == interval) {
    const float grown = float(double(scale) * growth);
    if (!nonfinite(grown)) scale = grown;
    tracker = 0;
  } else {
    tracker = successful;
  }
}

}  // namespace rules
}  // namespace optkern
