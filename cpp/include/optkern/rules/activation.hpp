// Elementwise activations with the first and second derivative in one pass:
// the single source of the math for cpp/nn.cpp (OpenMP) and cuda/nn.cu.
//
// The R-operator (Pearlmutter 1994) needs, per pre-activation z,
//   a = f(z),  f'(z)  (backward and R-forward),  f''(z)  (R-backward).
// GELU is the exact erf form (torch's default), softplus has beta = 1.
#pragma once
#include <cmath>

#include "optkern/common.hpp"

namespace optkern {
namespace rules {
namespace nnmath {

// Host: std:: overloads; device: CUDA's float/double overloads.
#if defined(__CUDACC__)
template <class T> OK_HD T exp_(T x) { return exp(x); }
template <class T> OK_HD T log_(T x) { return log(x); }
template <class T> OK_HD T log1p_(T x) { return log1p(x); }
template <class T> OK_HD T tanh_(T x) { return tanh(x); }
template <class T> OK_HD T erf_(T x) { return erf(x); }
#else
template <class T> OK_HD T exp_(T x) { return std::exp(x); }
template <class T> OK_HD T log_(T x) { return std::log(x); }
template <class T> OK_HD T log1p_(T x) { return std::log1p(x); }
template <class T> OK_HD T tanh_(T x) { return std::tanh(x); }
template <class T> OK_HD T erf_(T x) { return std::erf(x); }
#endif

// 1 / (1 + e^-z) without overflow for large |z|.
template <class T> OK_HD T sigmoid(T z) {
  if (z >= T(0)) return T(1) / (T(1) + exp_(-z));
  const T e = exp_(z);
  return e / (T(1) + e);
}

}  // namespace nnmath

enum class Act : int { identity = 0, tanh = 1, relu = 2, gelu = 3, sigmoid = 4, softplus = 5 };
constexpr int kNumAct = 6;

// f(z), f'(z), f''(z) of activation `k`.
template <class T> OK_HD void activation(Act k, T z, T& f, T& d1, T& d2) {
  using namespace nnmath;
  switch (k) {
    case Act::tanh: {  // f' = 1 - f^2, f'' = -2 f f'
      f = tanh_(z);
      d1 = T(1) - f * f;
      d2 = T(-2) * f * d1;
      return;
    }
    case Act::relu: {  // f'' = 0 away from the kink
      f = z > T(0) ? z : T(0);
      d1 = z > T(0) ? T(1) : T(0);
      d2 = T(0);
      return;
    }
    case Act::gelu: {  // f = z Phi(z), f' = Phi + z phi, f'' = phi (2 - z^2)
      const T cdf = T(0.5) * (T(1) + erf_(z * T(0.70710678118654752440)));
      const T pdf = T(0.39894228040143267794) * exp_(T(-0.5) * z * z);
      f = z * cdf;
      d1 = cdf + z * pdf;
      d2 = pdf * (T(2) - z * z);
      return;
    }
    case Act::sigmoid: {  // f' = s (1 - s), f'' = f' (1 - 2 s)
      const T s = sigmoid(z);
      f = s;
      d1 = s * (T(1) - s);
      d2 = d1 * (T(1) - T(2) * s);
      return;
    }
    case Act::softplus: {  // log(1 + e^z) = max(z, 0) + log1p(e^-|z|); f' = sigmoid
      const T s = sigmoid(z);
      f = (z > T(0) ? z : T(0)) + log1p_(exp_(z > T(0) ? -z : z));
      d1 = s;
      d2 = s * (T(1) - s);
      return;
    }
    default: {  // identity
      f = z;
      d1 = T(1);
      d2 = T(0);
      return;
    }
  }
}

}  // namespace rules
}  // namespace optkern
