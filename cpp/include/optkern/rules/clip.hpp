// clip_grads_with_norm_'s factor for a total_norm of another dtype than the grads
// (torch.nn.utils.clip_grads_with_norm_ takes any floating tensor: get_total_norm's of float32
// grads under a float64 model, a half model's float32 norm, a float16 norm of float32 grads).
// torch computes clamp(max_norm / (t + 1e-6), max=1) in the norm's dtype D, then the grads'
// mul_ reads that factor in their compute type (float for float32 / float16 / bfloat16 grads,
// double for double): the factor rounded to D, then to the grads' compute type.
#pragma once
#include "optkern/common.hpp"
#include "optkern/rules/lowp.hpp"
#include "optkern/rules/optim.hpp"

namespace optkern {
namespace rules {

// The dtype of the norm the factor is computed in: `grads` is the grads' own (clip_grad_norm_'s
// norm, a Python number given as total_norm).
enum class NormDtype : int { grads = 0, f64 = 1, f32 = 2, f16 = 3, bf16 = 4 };

// x rounded to float16 / bfloat16 (nearest even), back as the float it is.
OK_HD float round_half(float x, bool bf16) {
  return bf16 ? lowp::bf16_to_f32(lowp::f32_to_bf16(x)) : lowp::f16_to_f32(lowp::f32_to_f16(x));
}

// clip_coef in a half dtype: each torch op computed in float and rounded to the half type; the
// sum's 1e-6 is rounded to it first (torch's add of a Python scalar to a half tensor: 1e-6 as
// float16 is 1.013e-6, which moves the sum's rounding), the product's max_norm is not (its mul
// reads the scalar in float). `norm` is a value of the half type (the caller's array held it).
OK_HD float clip_coef_half(double max_norm, double norm, bool bf16) {
  const float s = round_half(float(norm) + round_half(1e-6f, bf16), bf16);
  const float c = round_half(round_half(1.0f / s, bf16) * float(max_norm), bf16);
  return c > 1.0f ? 1.0f : c;  // (clamp(max=1) keeps a NaN)
}

// The factor that multiplies grads of compute type T for a norm of dtype `d`.
template <class T> OK_HD double clip_coef_of(NormDtype d, double max_norm, double norm) {
  double c;
  switch (d) {
    case NormDtype::f64:
      c = clip_coef<double>(max_norm, norm);
      break;
    case NormDtype::f32:
      c = clip_coef<float>(max_norm, norm);
      // (a finite float64 norm past float's range cannot be given as a float32 array)
      break;
    case NormDtype::f16:
    case NormDtype::bf16:
      c = double(clip_coef_half(max_norm, norm, d == NormDtype::bf16));
      break;
    default:
      return clip_coef<T>(max_norm, norm);
  }
  return double(T(c));
}

}  // namespace rules
}  // namespace optkern
