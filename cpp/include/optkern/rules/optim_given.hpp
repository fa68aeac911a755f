// Optimizer rules with their step scalars given, not computed (rules/optim.hpp computes them): the
// host computes them as torch.optim's for-loop does from tensor hyper-parameters, in torch's own
// tensor ops (optkern.torch._torch_scalars), and these take each rounded once to the arrays' dtype.
#pragma once

#include "optkern/rules/optim.hpp"

namespace optkern {
namespace rules {

// The shared scalars (MomentScalars) as given, each rounded once to T: AdamGiven's and NAdamGiven's.
template <class T, class Hyper> OK_HD MomentScalars<T> given_moments(const Hyper& h) {
  return {T(h.one_minus_beta1), T(h.beta2), T(h.one_minus_beta2), T(h.eps), T(h.weight_decay), T(h.decay), h.maximize};
}

// Adam's update with its step scalars given, not computed: the host computes them as torch.optim's
// for-loop does from tensor hyper-parameters (tensor betas, a float16 / bfloat16 lr, a tensor weight
// decay), in torch's own tensor ops -- a tensor pow special-casing small exponents, `lr / bc1` as
// reciprocal times lr, every op rounded to the tensor's dtype -- which no double formula here can
// follow. `lr` is the step size lr / bc1 (what a capturable call's lr_buffer replaces),
// weight_decay the L2 coefficient (0 when decoupled), decay the decoupled factor (1 when L2).
struct AdamGivenHyper {
  double lr, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, bc2_sqrt;
  bool maximize;
};
template <class T, bool Amsgrad> struct AdamGiven : Adam<T, Amsgrad> {
  using Hyper = AdamGivenHyper;
  static OK_HD AdamGiven at(const Hyper& h, const Counters&) {
    return {{{given_moments<T>(h), T(h.lr), T(h.bc2_sqrt)}}};
  }
};

// NAdam's update with its step scalars given (as AdamGiven: torch's tensor-op values from tensor betas,
// computed and the product kept by the caller). `lr` is the gradient's coefficient -lr (1 - mu_t) / (1 -
// prod_t) (what a capturable call's lr_buffer replaces), c_avg the average's, bc2 = 1 - beta2^t.
struct NAdamGivenHyper {
  double lr, c_avg, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, bc2;
  bool maximize;
};
template <class T> struct NAdamGiven : NAdam<T> {
  using Hyper = NAdamGivenHyper;
  static OK_HD NAdamGiven at(const Hyper& h, const Counters& c) {
    return {{given_moments<T>(h), T(h.lr), T(h.c_avg), T(h.bc2), c.mu_product}};
  }
};

}  // namespace rules
}  // namespace optkern
