// Per-element optimizer update rules and their step scalars: the single
// source of the math, used by the OpenMP loops (cpp/optim.cpp) and the CUDA
// kernels (cuda/optim.cu).
//
// Each rule is a small struct of scalars with
//     using Hyper = ...;                         // its hyper-parameters, in double
//     static constexpr int kState;               // state arrays it reads/writes
//     static OK_HD Rule at(const Hyper&, const Counters&);
//     OK_HD void operator()(T& p, T g, T* s) const;
// `at` is the ONE place that computes the step-dependent scalars (bias
// corrections, NAdam's momentum schedule, Adagrad's decayed lr, SGD's first
// step, decoupled decay) from the hyper-parameters and the step count, in
// double: the host calls it for a plain step, a capturable CUDA kernel calls
// it on the device from a device step counter. s[0..kState) are the element's
// state values (loaded before, stored after the call). Formulas and operation
// order follow torch.optim's single-tensor implementations, and like torch
// every scalar derived from hyper-parameters (1 - beta, 1 - alpha, bias
// corrections, step sizes...) is computed in double and rounded once to the
// storage type T, so float32 results agree with torch's to rounding.
#pragma once
#include <cmath>

#include "optkern/common.hpp"
#include "optkern/rules/rounding.hpp"

namespace optkern {
namespace rules {

#if defined(__CUDACC__)
template <class T> OK_HD T ok_sqrt(T x) { return sqrt(x); }
OK_HD double ok_pow(double x, double y) { return pow(x, y); }
#else
template <class T> OK_HD T ok_sqrt(T x) { return std::sqrt(x); }
OK_HD double ok_pow(double x, double y) { return std::pow(x, y); }
#endif

// What a step's scalars depend on besides the hyper-parameters: the step
// count t (from 1, this step included) and, for NAdam, the product of the
// momentum schedule up to step t - 1 (1.0 before the first step).
struct Counters {
  double t;
  double mu_product = 1.0;
};

// 1 - lr wd: AdamW's decoupled decay factor (1 when the decay is L2). float32_lr: lr is a float32
// tensor (torch.optim takes one), and torch's `1 - lr * weight_decay` two float32 tensor ops.
OK_HD double decoupled_decay(double lr, double wd, bool decoupled, bool float32_lr = false) {
  if (!decoupled) return 1.0;
  return float32_lr ? double(sub_f(1.0f, mul_f(float(lr), float(wd)))) : 1.0 - mul_rn(lr, wd);
}

// -lr a / b with lr a float32 tensor (float32_lr) as torch's tensor ops round it: (-lr * a) / b,
// each a float32 op, a and b (Python floats) rounded to float32 first; else in double. Adam's
// step size (a = 1) and NAdam's two coefficients.
OK_HD double neg_lr_ratio(double lr, double a, double b, bool float32_lr) {
  if (!float32_lr) return -lr * a / b;
  return double(div_f(mul_f(-float(lr), float(a)), float(b)));  // (a = 1: the product is exact)
}

// A rule's bool flag as a value of T (1 or 0), tested `flag != T(0)` inside the element loop: GCC 12
// vectorizes a select on a comparison of loop-invariant floats, but not one on a loop-invariant
// bool unless it first unswitched the loop on it, which it does only for loops up to a size
// (--param max-unswitch-insns, 50): SGD's momentum loop and RMSprop's centered momentum loop were
// over it, and ran scalar at a third of the memory bandwidth (`optkern bench rules`).
template <class T> OK_HD T flag(bool b) { return b ? T(1) : T(0); }

// The gradient as a rule sees it: negated to maximize, L2 decay folded in as
// torch's grad.add(param, alpha=weight_decay), one explicit fma (an fmadd in
// torch's vector kernels). Written g + wd p, GCC contracted the exact product
// g * (+-1) into the add instead and rounded wd p on its own, while nvcc
// fuses wd p: CPU and GPU differed by one rounding (found by running cuda/ on
// the CPU, tools/cuda_emu). maximize is a multiplier by -1 (exact) and the
// decay's test a float comparison, not selects on a bool (see flag()).
template <class T> OK_HD T effective_grad(T p, T g, T wd, bool maximize) {
  g = g * (maximize ? T(-1) : T(1));
  return wd != T(0) ? fma_t(p, wd, g) : g;
}

// torch.lerp's two-sided form, exact at both ends: a + w (b - a). Both sides
// are computed and one selected, so vectorizers see no branch. Each side one
// fused multiply-add, as torch's AVX2 kernel (fmadd / fnmadd) and its CUDA
// kernel (nvcc's contraction) round it: explicit, so the bits do not depend on
// whether a compiler contracts (the CPU's baseline clone, an emulator).
template <class T> OK_HD T lerp(T a, T b, T w) {
  const T d = b - a;
  const T lo = fma_t(w, d, a);
  const T hi = fma_t(-d, T(1) - w, b);
  return w < T(0.5) ? lo : hi;
}

// SGD. PyTorch form: b <- mu b + (1 - damp) g (b <- g on the first step),
// d = g + mu b (Nesterov) or b, p <- p - lr d.
// Textbook form (Goodfellow 8.2/8.3): v <- mu v - lr g, p <- p + v
// (Nesterov: p <- p + mu v - lr g); differs once lr changes between steps.
// t counts the steps of the momentum buffers: t = 1 initialises them.
struct SgdHyper {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize, textbook;
};
template <class T, bool Momentum> struct Sgd {
  using Hyper = SgdHyper;
  static constexpr int kState = Momentum ? 1 : 0;  // momentum_buffer
  T lr, momentum, weight_decay;
  // The buffer's update as one fma, b = fma(d_coef, d, momentum s): d_coef = 1 - dampening after the
  // first step; on it d_coef = 1 and the addend -0 (whatever the buffer holds: a NaN in a buffer the
  // first step overwrites must not leak), so b = d exactly (a -0 grad included), torch's clone of
  // the grad. The textbook form's v likewise, with v_coef = -lr (1 - dampening), -lr on the first step.
  T d_coef, v_coef;
  // The flags as 0/1 values of T, tested `!= 0` (see flag()): first step, Nesterov, textbook form.
  T first, nesterov, textbook;
  bool maximize;
  static OK_HD Sgd at(const Hyper& h, const Counters& c) {
    const bool first = c.t <= 1.0;
    return {T(h.lr),
            T(h.momentum),
            T(h.weight_decay),
            first ? T(1) : T(1.0 - h.dampening),
            first ? T(-h.lr) : T(-mul_rn(h.lr, 1.0 - h.dampening)),
            flag<T>(first),
            flag<T>(h.nesterov),
            flag<T>(h.textbook),
            h.maximize};
  }
  // One explicit fma wherever the expression has two products (a b + c d): GCC contracts either
  // product into the add, and its vector body and scalar tail (split differently by the AVX2 and
  // AVX-512 clones) chose differently. Both forms and both sides of each Nesterov select are
  // computed, so the selects are between values (a call inside a select arm keeps GCC from
  // vectorizing the loop); where GCC unswitches the loop on the flags the unused ones go.
  OK_HD void operator()(T& p, T g, T* s) const {
    const T d = effective_grad(p, g, weight_decay, maximize);
    if constexpr (Momentum) {
      const T kept = first != T(0) ? T(-0.0) : momentum * s[0];
      // PyTorch form: b <- momentum b + (1 - dampening) d, p <- p - lr (d + momentum b or b)
      const T b = fma_t(d_coef, d, kept);  // buf.mul_(momentum).add_(grad, alpha=1 - dampening)
      const T torch_d = nesterov != T(0) ? fma_t(momentum, b, d) : b;  // grad.add(buf, alpha=momentum)
      // p.add_(b, alpha=-lr) as one fma, written out: GCC's FMA clones fused it anyway, but nvcc
      // hoists the `p +` both forms share out of the select below, p + (textbook ? step :
      // -(lr torch_d)), and then rounds lr torch_d on its own (SASS of lowp_kernel and apply_kernel
      // for Sgd<T, true>: FMUL, FSEL, FADD): one rounding off the CPU's bits, 0.3% of elements.
      const T torch_p = fma_t(-lr, torch_d, p);
      // textbook form: v <- momentum v - lr (1 - dampening) d, p <- p + v (or + momentum v - lr d)
      const T v = fma_t(v_coef, d, kept);
      const T nesterov_step = fma_t(-lr, d, momentum * v);
      const T textbook_p = p + (nesterov != T(0) ? nesterov_step : v);
      s[0] = textbook != T(0) ? v : b;
      p = textbook != T(0) ? textbook_p : torch_p;
    } else {
      p = fma_t(-lr, d, p);  // param.add_(grad, alpha=-lr)
    }
  }
};

// Adagrad: s <- s + g^2, p <- p - clr g / (sqrt(s) + eps),
// clr = lr / (1 + (t - 1) lr_decay).
struct AdagradHyper {
  double lr, lr_decay, weight_decay, eps;
  bool maximize, float32_lr;  // float32_lr: as AdamHyper's (torch's lr / (1 + ...) a float32 op)
};
template <class T> struct Adagrad {
  using Hyper = AdagradHyper;
  static constexpr int kState = 1;  // sum
  T clr, eps, weight_decay;
  bool maximize;
  static OK_HD Adagrad at(const Hyper& h, const Counters& c) {
    const double clr = -neg_lr_ratio(h.lr, 1.0, 1.0 + mul_rn(c.t - 1.0, h.lr_decay), h.float32_lr);
    return {T(clr), T(h.eps), T(h.weight_decay), h.maximize};
  }
  OK_HD void operator()(T& p, T g, T* s) const {
    g = effective_grad(p, g, weight_decay, maximize);
    s[0] = fma_t(g, g, s[0]);  // state_sum.addcmul_(grad, grad, value=1)
    p = p + ((-clr) * g) / (ok_sqrt(s[0]) + eps);  // torch's addcdiv: (value t1) / t2
  }
};

// AdaGrad-Norm (Ward, Wu & Bottou 2019): once b^2 holds this step's squared
// gradient norm, a plain SGD step with lr / b. b^2 = 0 means every gradient
// so far was zero: no step (not 0 / 0).
struct AdagradNormHyper {
  double lr, weight_decay;
  bool maximize;
};
template <class T> OK_HD Sgd<T, false> adagrad_norm_at(const AdagradNormHyper& h, double b_sq) {
  const double rate = b_sq > 0.0 ? h.lr / ok_sqrt(b_sq) : 0.0;
  return Sgd<T, false>::at({rate, 0.0, 0.0, h.weight_decay, false, h.maximize, false}, {2.0});
}

// RMSprop: v <- a v + (1 - a) g^2; centered subtracts the squared running
// mean of g (clamped at zero: v - a^2 can round below zero, and torch's NaN
// there is no one's intent); with momentum b <- mu b + g / avg, p <- p - lr b;
// Nesterov (Goodfellow Alg. 8.6, evaluated at the look-ahead point the
// parameters hold) uses p <- p - lr (g / avg + mu b).
struct RMSpropHyper {
  double lr, alpha, eps, weight_decay, momentum;
  bool nesterov, maximize;
};
template <class T, bool Centered, bool Momentum> struct RMSprop {
  using Hyper = RMSpropHyper;
  static constexpr int kState = 1 + Centered + Momentum;  // square_avg, grad_avg, momentum_buffer
  T lr, alpha, one_minus_alpha, eps, weight_decay, momentum, lr_momentum;
  T nesterov;  // a flag<T>
  bool maximize;
  static OK_HD RMSprop at(const Hyper& h, const Counters&) {
    return {T(h.lr),       T(h.alpha),    T(1.0 - h.alpha), T(h.eps), T(h.weight_decay),
            T(h.momentum), T(mul_rn(h.lr, h.momentum)), flag<T>(h.nesterov), h.maximize};
  }
  // torch's ops, each rounded where torch rounds: square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha);
  // avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_() (centered) or square_avg.sqrt(), then
  // .add_(eps); buf.mul_(momentum).addcdiv_(g, avg) and param.add_(buf, alpha=-lr), or
  // param.addcdiv_(g, avg, value=-lr).
  OK_HD void operator()(T& p, T g, T* s) const {
    g = effective_grad(p, g, weight_decay, maximize);
    s[0] = scaled_fma(s[0], alpha, one_minus_alpha * g, g);
    T avg;
    if constexpr (Centered) {
      s[1] = lerp(s[1], g, one_minus_alpha);
      const T var = fma_t(-s[1], s[1], s[0]);  // addcmul's one fused multiply-add
      avg = ok_sqrt(var < T(0) ? T(0) : var) + eps;  // a NaN stays NaN
    } else {
      avg = ok_sqrt(s[0]) + eps;
    }
    if constexpr (Momentum) {
      T& b = s[kState - 1];
      const T step = g / avg;
      b = scaled_plus(b, momentum, step);
      // Nesterov's lr (step + momentum b) as lr step + (lr momentum) b: step + momentum b can overflow
      // where the update does not (alpha = 1 keeps v at 0, so step = g / eps: eps = 1e-38 in float32).
      const T nesterov_p = fma_t(-lr_momentum, b, fma_t(-lr, step, p));
      p = nesterov != T(0) ? nesterov_p : fma_t(-lr, b, p);  // param.add_(buf, alpha=-lr)
    } else {
      p = p + ((-lr) * g) / avg;
    }
  }
};

// Adadelta: v <- rho v + (1 - rho) g^2, d = sqrt(u + eps) / sqrt(v + eps) g,
// u <- rho u + (1 - rho) d^2, p <- p - lr d.
struct AdadeltaHyper {
  double lr, rho, eps, weight_decay;
  bool maximize;
};
template <class T> struct Adadelta {
  using Hyper = AdadeltaHyper;
  static constexpr int kState = 2;  // square_avg, acc_delta
  T lr, rho, one_minus_rho, eps, weight_decay;
  bool maximize;
  static OK_HD Adadelta at(const Hyper& h, const Counters&) {
    return {T(h.lr), T(h.rho), T(1.0 - h.rho), T(h.eps), T(h.weight_decay), h.maximize};
  }
  // torch's ops, each rounded where torch rounds: square_avg.mul_(rho).addcmul_(g, g, value=1 - rho);
  // delta = acc_delta.add(eps).sqrt_().div_(square_avg.add(eps).sqrt_()).mul_(g);
  // acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho); param.add_(delta, alpha=-lr).
  OK_HD void operator()(T& p, T g, T* s) const {
    g = effective_grad(p, g, weight_decay, maximize);
    s[0] = scaled_fma(s[0], rho, one_minus_rho * g, g);
    const T d = ok_sqrt(s[1] + eps) / ok_sqrt(s[0] + eps) * g;
    s[1] = scaled_fma(s[1], rho, one_minus_rho * d, d);
    p = fma_t(-lr, d, p);  // param.add_(delta, alpha=-lr)
  }
};

// Adam / AdamW / AMSGrad: m <- lerp(m, g, 1 - b1), v <- b2 v + (1 - b2) g^2,
// p <- p - (lr / bc1) m / (sqrt(v or vmax) / sqrt(bc2) + eps), bc_i = 1 - b_i^t.
// Decoupled decay (AdamW) first scales p by decay = 1 - lr wd; L2 decay
// (Adam) folds wd p into g instead.
// float32_lr: lr is a float32 tensor (torch.optim's tensor lr), whose step size and decay torch
// computes in float32 tensor ops (neg_lr_ratio, decoupled_decay).
struct AdamHyper {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled, maximize, float32_lr;
};
// The scalars Adam and NAdam share -- their moments' coefficients, eps, L2 and decoupled decay,
// maximize -- computed from either's hyper-parameters in one place (`of`), so the two rules cannot
// come to round them differently.
template <class T> struct MomentScalars {
  T one_minus_beta1, beta2, one_minus_beta2, eps, l2, decay;
  bool maximize;
  template <class Hyper> static OK_HD MomentScalars of(const Hyper& h) {
    return {T(1.0 - h.beta1),
            T(h.beta2),
            T(1.0 - h.beta2),
            T(h.eps),
            T(h.decoupled ? 0.0 : h.weight_decay),
            T(decoupled_decay(h.lr, h.weight_decay, h.decoupled, h.float32_lr)),
            h.maximize};
  }
};
// UnitBc2: the same rule for a step whose bc2_sqrt is exactly 1 (from 1 - beta2^t < 2^-24 on, in
// float32: t > ~16,600 at beta2 = 0.999, ~1,650 at 0.99, ~320 at 0.95 -- nearly every step of a long
// run). Dividing by 1 returns its dividend for every float (a NaN included; sqrt(v) is never
// subnormal, so no denormal mode matters), so this form drops one of the element's three divider
// operations and changes no bit. A loop bound by the divider picks it at run time
// (cpp/lowp_loop.hpp); the others keep the plain form.
// A step's scalars, apart from the rule so that both forms hold the very same fields (with_unit_bc2
// copies them whole; Adam adds none: the static_assert below).
template <class T> struct AdamScalars : MomentScalars<T> {
  T step_size, bc2_sqrt;
};
template <class T, bool Amsgrad, bool UnitBc2 = false> struct Adam : AdamScalars<T> {
  using Hyper = AdamHyper;
  static constexpr int kState = Amsgrad ? 3 : 2;  // exp_avg, exp_avg_sq, max_exp_avg_sq
  static OK_HD Adam at(const Hyper& h, const Counters& c) {
    const double bc1 = 1.0 - ok_pow(h.beta1, c.t), bc2 = 1.0 - ok_pow(h.beta2, c.t);
    return {{MomentScalars<T>::of(h), T(-neg_lr_ratio(h.lr, 1.0, bc1, h.float32_lr)), T(ok_sqrt(bc2))}};
  }
  OK_HD void operator()(T& p, T g, T* s) const {
    const AdamScalars<T>& k = *this;  // (the base's names, spelled once: it depends on T)
    g = effective_grad(p, g, k.l2, k.maximize);  // (decay is 1 when l2 is not 0)
    s[0] = lerp(s[0], g, k.one_minus_beta1);
    s[1] = scaled_fma(s[1], k.beta2, k.one_minus_beta2 * g, g);
    T v = s[1];
    if constexpr (Amsgrad) {
      s[2] = s[2] > v ? s[2] : v;
      v = s[2];
    }
    T d = ok_sqrt(v);
    if constexpr (!UnitBc2) d = d / k.bc2_sqrt;
    p = scaled_plus(p, k.decay, ((-k.step_size) * s[0]) / (d + k.eps));
  }
  // This step's rule as the UnitBc2 form (for a caller that checked bc2_sqrt == 1): the scalars
  // copied whole, each field by its name (listed by position, a field added later shifted values).
  OK_HD Adam<T, Amsgrad, true> with_unit_bc2() const { return {static_cast<const AdamScalars<T>&>(*this)}; }
};
// Adam holds nothing but its scalars, so with_unit_bc2 copies all of it.
static_assert(sizeof(Adam<float, true>) == sizeof(AdamScalars<float>), "Adam's fields belong in AdamScalars");
static_assert(sizeof(Adam<double, false>) == sizeof(AdamScalars<double>), "Adam's fields belong in AdamScalars");

// NAdam (Dozat 2016, torch.optim.NAdam): momentum schedule
// mu_t = b1 (1 - 0.96^(t psi) / 2), prod_t = mu_1 ... mu_t (mu_product, kept
// by the caller in T's precision, or in float64 with float64_product: `at` returns the new one;
// torch keeps it in its state's dtype -- its default dtype, float64 under
// torch.set_default_dtype(torch.float64), where its float32 params step with a float64 product);
// p <- p - lr (1 - mu_t) / (1 - prod_t) g / d - lr mu_{t+1} / (1 - prod_t mu_{t+1}) m / d,
// d = sqrt(v / bc2) + eps.
struct NAdamHyper {
  double lr, beta1, beta2, eps, weight_decay, momentum_decay;
  bool decoupled, maximize, float64_product, float32_lr;  // float32_lr: as AdamHyper's
};
template <class T> struct NAdam : MomentScalars<T> {
  using Hyper = NAdamHyper;
  static constexpr int kState = 2;  // exp_avg, exp_avg_sq
  T c_grad, c_avg, bc2;
  double mu_product;  // prod_t, for the caller's counter
  // mu_t, the momentum factor of step t.
  static OK_HD double mu_at(const Hyper& h, double t) {
    return mul_rn(h.beta1, 1.0 - mul_rn(0.5, ok_pow(0.96, t * h.momentum_decay)));
  }
  static OK_HD NAdam at(const Hyper& h, const Counters& c) {
    const double mu = mu_at(h, c.t), mu_next = mu_at(h, c.t + 1.0);
    // rounded to T: torch's float32 state for T = float; for T = double kept in double (more exact);
    // float64_product: torch's float64 state (mu a double, as torch's `mu_product *= mu` takes it)
    const double prod = h.float64_product ? mul_rn(c.mu_product, mu)
                                          : double(T(mul_rn(double(T(c.mu_product)), double(T(mu)))));
    return {MomentScalars<T>::of(h),
            T(neg_lr_ratio(h.lr, 1.0 - mu, 1.0 - prod, h.float32_lr)),
            T(neg_lr_ratio(h.lr, mu_next, 1.0 - mul_rn(prod, mu_next), h.float32_lr)),
            T(1.0 - ok_pow(h.beta2, c.t)),
            prod};
  }
  OK_HD void operator()(T& p, T g, T* s) const {
    const MomentScalars<T>& k = *this;  // (the base's names, spelled once: it depends on T)
    g = effective_grad(p, g, k.l2, k.maximize);  // (decay is 1 when l2 is not 0)
    s[0] = lerp(s[0], g, k.one_minus_beta1);
    s[1] = scaled_fma(s[1], k.beta2, k.one_minus_beta2 * g, g);
    const T denom = ok_sqrt(s[1] / bc2) + k.eps;
    p = scaled_plus(p, k.decay, (c_grad * g) / denom);
    p = p + (c_avg * s[0]) / denom;
  }
};

// The counters after a step that used `rule` at `c`.
template <class Rule> OK_HD Counters advance(const Rule&, const Counters& c) { return {c.t, c.mu_product}; }
template <class T> OK_HD Counters advance(const NAdam<T>& r, const Counters& c) { return {c.t, r.mu_product}; }

// Gradient transforms used by clipping (state-free, write g in place).
// g * c with c held in double: for a c that T represents (every factor but the one below) the
// product is exact in double and rounds once, so it is T's own g * c bit for bit.
template <class T> struct Scale {
  double c;
  OK_HD T operator()(T g) const { return T(double(g) * c); }
};
// clip_grad_norm_'s factor min(1, max_norm / (norm + 1e-6)) rounded as torch rounds it: its norm is
// a tensor of the grads' dtype, `max_norm / t` is `t.reciprocal() * max_norm` (Tensor.__rtruediv__),
// each op in T with the Python scalars cast to T, then clamp(max=1), which keeps a NaN (a NaN or
// infinite norm makes NaN gradients, as there). T(norm) is the float64 norm rounded once. A finite
// norm past T's range (float32 grads near FLT_MAX) rounds to inf there and torch zeroes the
// gradients; the factor is then taken in double and applied unrounded (it is subnormal in float32
// for max_norm ~ 1), so they come out clipped.
template <class T> OK_HD double clip_coef(double max_norm, double norm) {
  const T tn = T(norm);
  if (tn - tn != T(0) && norm - norm == 0.0) {  // T(norm) is inf while norm is finite
    const double c = max_norm / (norm + 1e-6);
    return c > 1.0 ? 1.0 : c;
  }
  const T r = T(1) / (tn + T(1e-6));
  const T c = r * T(max_norm);
  return c > T(1) ? 1.0 : double(c);
}
template <class T> struct ClampValue {
  T c;
  OK_HD T operator()(T g) const { return g > c ? c : (g < -c ? -c : g); }
};

}  // namespace rules
}  // namespace optkern
