// L1 / L2 penalty rules: the single source of the math, used by the OpenMP
// loops (cpp/regularize.cpp) and the CUDA kernels (cuda/regularize.cu).
//
//   penalty(p)      = l1 * |p| + l2 / 2 * p^2
//   d penalty / dp  = l1 * sign(p) + l2 * p        (sign(0) = 0, a subgradient)
#pragma once
#include <cmath>

#include "optkern/common.hpp"

namespace optkern {
namespace rules {

template <class T> OK_HD T sign(T x) { return T((x > T(0)) - (x < T(0))); }

// g <- g + l2 p + l1 sign(p): the penalty's gradient fused into the loss gradient. The L2 term is one
// fma, like the optimizers' weight decay (torch's grad.add(param, alpha=weight_decay)), explicit so
// that no compiler decides it (rules/rounding.hpp); l1 sign(p) is exact, so its add rounds once
// either way.
template <class T> OK_HD T penalty_grad(T p, T g, T l1, T l2) { return fma_t(l1, sign(p), fma_t(l2, p, g)); }

// One element's penalty, accumulated in double whatever the storage type.
template <class T> OK_HD double penalty_term(T p, double l1, double l2) {
  const double d = double(p);
  return fma_t(0.5 * l2 * d, d, l1 * (d < 0.0 ? -d : d));  // one explicit fma (rules/rounding.hpp)
}

}  // namespace rules
}  // namespace optkern
