// Where a rule rounds, written out so that no compiler decides it. GCC contracts any a * b + c
// into one fma (-ffp-contract=fast, from -O2 and only in an ISA clone that has FMA) and nvcc does
// too; torch and NumPy round where their ops end. So the rules contract nothing implicitly:
// every multiply-add that the reference fuses is an explicit fma_t (common.hpp) -- torch's
// lerp, addcmul and add(other, alpha=...) are one fmadd each in its vector kernels -- and every
// product that the reference rounds on its own goes through one of these:
//   mul_rn(a, b)             = round(a b), a host/device step scalar in double
//   scaled_plus(a, b, x)     = round(round(a b) + x)   NumPy's x + a * b; torch's mul_ then add_
//   scaled_fma(a, b, c, d)   = fma(c, d, round(a b))   torch's mul_(beta2).addcmul_(g, g, value=c)
// On the host scaled_plus keeps its product out of the add's contraction by a second use, a NaN
// test that selects the same value (GCC fuses a product into an add only when every use is an
// add), and scaled_fma's product is an fma's addend, which no compiler folds; CUDA rounds each
// explicitly. The bits are then the same under -O1 (no FMA pass), -O3, any ISA clone and nvcc:
// the torch float32 comparisons (test_optim_torch_float32.py, test_torch_adapter.py) and the
// NumPy ones of the second-order passes (test_cg_kernels.py, test_sam.py, test_lbfgs.py) hold
// bit for bit under the sanitizer's -O1 build and the emulated CUDA build too.
#pragma once
#include "optkern/common.hpp"

namespace optkern {
namespace rules {

// torch's float32 tensor ops on a step scalar (an lr given as a float32 tensor: `lr / bc1`,
// `1 - lr * wd`), each rounded to float32, the Python-float operand rounded to float32 first (a
// CPU scalar in torch's TensorIterator): mul_f, div_f, sub_f, never contracted.
#if defined(__CUDA_ARCH__)
OK_HD float mul_f(float a, float b) { return __fmul_rn(a, b); }
OK_HD float div_f(float a, float b) { return __fdiv_rn(a, b); }
OK_HD float sub_f(float a, float b) { return __fsub_rn(a, b); }
#else
OK_HD float mul_f(float a, float b) { return a * b; }
OK_HD float div_f(float a, float b) { return a / b; }
OK_HD float sub_f(float a, float b) { return a - b; }
#endif

#if defined(__CUDA_ARCH__)
OK_HD double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float mul_t(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul_t(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float add_t(float a, float b) { return __fadd_rn(a, b); }
__device__ inline double add_t(double a, double b) { return __dadd_rn(a, b); }
template <class T> OK_HD T scaled_plus(T a, T b, T x) { return add_t(mul_t(a, b), x); }
template <class T> OK_HD T scaled_fma(T a, T b, T c, T d) { return fma(c, d, mul_t(a, b)); }
#else
// (the host computes step scalars in its bindings, outside the ISA clones: no FMA to contract into)
OK_HD double mul_rn(double a, double b) { return a * b; }
template <class T> OK_HD T scaled_plus(T a, T b, T x) {
  const T ab = a * b;
  return ab != ab ? ab : ab + x;  // a NaN stays that NaN, as ab + x would
}
template <class T> OK_HD T scaled_fma(T a, T b, T c, T d) {
  return fma_t(c, d, a * b);  // (a product is never folded into an fma's addend)
}
#endif

}  // namespace rules
}  // namespace optkern
