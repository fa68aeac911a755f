// Per-element optimizer update rules: the single source of the math, used by
// the OpenMP loops (cpp/optim.cpp) and the CUDA kernels (cuda/optim.cu).
//
// A rule is a small struct of scalars computed once per step on the host
// (bias corrections, schedule values) with
//     static constexpr int kState;               // state arrays it reads/writes
//     OK_HD void operator()(T& p, T g, T* s) const;
// where s[0..kState) are the element's state values (loaded before, stored
// after the call). Formulas and operation order follow torch.optim's
// single-tensor implementations so results agree to rounding.
#pragma once
#include <cmath>

#include "optkern/common.hpp"

namespace optkern {
namespace rules {

#if defined(__CUDACC__)
template <class T> OK_HD T ok_sqrt(T x) { return sqrt(x); }
#else
template <class T> OK_HD T ok_sqrt(T x) { return std::sqrt(x); }
#endif

// The gradient as a rule sees it: negated to maximize, L2 decay folded in.
// Rules keep bool flags out of per-element selects (a multiplier by -1 is
// exact): GCC 12 cannot vectorize a select on a loop-invariant bool it did
// not unswitch, and it stops unswitching after a few conditions.
template <class T> OK_HD T effective_grad(T p, T g, T wd, bool maximize) {
  g = g * (maximize ? T(-1) : T(1));
  return wd != T(0) ? g + wd * p : g;
}

// torch.lerp's two-sided form, exact at both ends: a + w (b - a). Both sides
// are computed and one selected, so vectorizers see no branch.
template <class T> OK_HD T lerp(T a, T b, T w) {
  const T lo = a + w * (b - a);
  const T hi = b - (b - a) * (T(1) - w);
  return w < T(0.5) ? lo : hi;
}

// SGD. PyTorch form: b <- mu b + (1 - damp) g (b <- g on the first step),
// d = g + mu b (Nesterov) or b, p <- p - lr d.
// Textbook form (Goodfellow 8.2/8.3): v <- mu v - lr g, p <- p + v
// (Nesterov: p <- p + mu v - lr g); differs once lr changes between steps.
template <class T, bool Momentum> struct Sgd {
  static constexpr int kState = Momentum ? 1 : 0;  // momentum_buffer
  T lr, momentum, dampening, weight_decay;
  bool nesterov, maximize, first, textbook;
  OK_HD void operator()(T& p, T g, T* s) const {
    T d = effective_grad(p, g, weight_decay, maximize);
    if constexpr (Momentum) {
      if (textbook) {
        const T v = first ? -lr * d : momentum * s[0] - lr * (T(1) - dampening) * d;
        s[0] = v;
        p = nesterov ? p + (momentum * v - lr * d) : p + v;
        return;
      }
      const T b = first ? d : momentum * s[0] + (T(1) - dampening) * d;
      s[0] = b;
      d = nesterov ? d + momentum * b : b;
    }
    p = p + (-lr) * d;
  }
};

// Adagrad: s <- s + g^2, p <- p - clr g / (sqrt(s) + eps),
// clr = lr / (1 + (t - 1) lr_decay) computed on the host.
template <class T> struct Adagrad {
  static constexpr int kState = 1;  // sum
  T clr, eps, weight_decay;
  bool maximize;
  OK_HD void operator()(T& p, T g, T* s) const {
    g = effective_grad(p, g, weight_decay, maximize);
    s[0] = s[0] + g * g;
    p = p + (-clr) * (g / (ok_sqrt(s[0]) + eps));
  }
};

// RMSprop: v <- a v + (1 - a) g^2; centered subtracts the squared running
// mean of g; with momentum b <- mu b + g / avg, p <- p - lr b; Nesterov
// (Goodfellow Alg. 8.6, evaluated at the look-ahead point the parameters
// hold) uses p <- p - lr (g / avg + mu b).
template <class T, bool Centered, bool Momentum> struct RMSprop {
  static constexpr int kState = 1 + Centered + Momentum;  // square_avg, grad_avg, momentum_buffer
  T lr, alpha, eps, weight_decay, momentum;
  bool nesterov, maximize;
  OK_HD void operator()(T& p, T g, T* s) const {
    g = effective_grad(p, g, weight_decay, maximize);
    s[0] = s[0] * alpha + (T(1) - alpha) * g * g;
    T avg;
    if constexpr (Centered) {
      s[1] = lerp(s[1], g, T(1) - alpha);
      avg = ok_sqrt(s[0] + (-T(1)) * s[1] * s[1]) + eps;
    } else {
      avg = ok_sqrt(s[0]) + eps;
    }
    if constexpr (Momentum) {
      T& b = s[kState - 1];
      b = b * momentum + g / avg;
      const T look_ahead = g / avg + momentum * b;
      p = p + (-lr) * (nesterov ? look_ahead : b);
    } else {
      p = p + (-lr) * (g / avg);
    }
  }
};

// AdaGrad-Norm's step size lr / b with b^2 the accumulated squared gradient
// norm. b^2 = 0 means every gradient so far was zero: no step (not 0 / 0).
OK_HD double adagrad_norm_rate(double lr, double b_sq) { return b_sq > 0.0 ? lr / ok_sqrt(b_sq) : 0.0; }

// Adadelta: v <- rho v + (1 - rho) g^2, d = sqrt(u + eps) / sqrt(v + eps) g,
// u <- rho u + (1 - rho) d^2, p <- p - lr d.
template <class T> struct Adadelta {
  static constexpr int kState = 2;  // square_avg, acc_delta
  T lr, rho, eps, weight_decay;
  bool maximize;
  OK_HD void operator()(T& p, T g, T* s) const {
    g = effective_grad(p, g, weight_decay, maximize);
    s[0] = s[0] * rho + (T(1) - rho) * g * g;
    const T d = ok_sqrt(s[1] + eps) / ok_sqrt(s[0] + eps) * g;
    s[1] = s[1] * rho + (T(1) - rho) * d * d;
    p = p + (-lr) * d;
  }
};

// Adam / AdamW / AMSGrad: m <- lerp(m, g, 1 - b1), v <- b2 v + (1 - b2) g^2,
// p <- p - (lr / bc1) m / (sqrt(v or vmax) / sqrt(bc2) + eps).
// Decoupled decay (AdamW) first scales p by decay = 1 - lr wd; L2 decay
// (Adam) folds wd p into g instead.
template <class T, bool Amsgrad> struct Adam {
  static constexpr int kState = Amsgrad ? 3 : 2;  // exp_avg, exp_avg_sq, max_exp_avg_sq
  T step_size, beta1, beta2, eps, l2, decay, bc2_sqrt;
  bool maximize;
  OK_HD void operator()(T& p, T g, T* s) const {
    p = p * decay;
    g = effective_grad(p, g, l2, maximize);
    s[0] = lerp(s[0], g, T(1) - beta1);
    s[1] = s[1] * beta2 + (T(1) - beta2) * g * g;
    T v = s[1];
    if constexpr (Amsgrad) {
      s[2] = s[2] > v ? s[2] : v;
      v = s[2];
    }
    p = p + (-step_size) * (s[0] / (ok_sqrt(v) / bc2_sqrt + eps));
  }
};

// NAdam (Dozat 2016, torch.optim.NAdam): momentum schedule mu_t; c_grad and
// c_avg are -lr (1 - mu_t) / (1 - prod mu) and -lr mu_{t+1} / (1 - prod mu')
// from the host; denom = sqrt(v / bc2) + eps.
template <class T> struct NAdam {
  static constexpr int kState = 2;  // exp_avg, exp_avg_sq
  T c_grad, c_avg, beta1, beta2, eps, l2, decay, bc2;
  bool maximize;
  OK_HD void operator()(T& p, T g, T* s) const {
    p = p * decay;
    g = effective_grad(p, g, l2, maximize);
    s[0] = lerp(s[0], g, T(1) - beta1);
    s[1] = s[1] * beta2 + (T(1) - beta2) * g * g;
    const T denom = ok_sqrt(s[1] / bc2) + eps;
    p = p + c_grad * (g / denom);
    p = p + c_avg * (s[0] / denom);
  }
};

// Gradient transforms used by clipping (state-free, write g in place).
template <class T> struct Scale {
  T c;
  OK_HD T operator()(T g) const { return g * c; }
};
template <class T> struct ClampValue {
  T c;
  OK_HD T operator()(T g) const { return g > c ? c : (g < -c ? -c : g); }
};

}  // namespace rules
}  // namespace optkern
