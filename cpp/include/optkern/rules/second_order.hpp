// The math of the second-order optimizers, written once for the host loops
// (cpp/lbfgs.cpp, cpp/sam.cpp, cpp/cg.cpp) and the CUDA kernels (cuda/lbfgs.cu, cuda/sam.cu, cuda/cg.cu).
//
// L-BFGS in coefficient space ("vector-free" L-BFGS, Chen, Yin, Li & Gao 2014): the two-loop
// recursion of torch.optim.LBFGS,
//     q = -g;  for i = k-1..0:  al_i = ro_i s_i.q;  q -= al_i y_i
//     r = H q; for i = 0..k-1:  be_i = ro_i y_i.r;  r += (al_i - be_i) s_i;   d = r,
// is linear in g, s_i, y_i, so every dot product it takes is a combination of the inner
// products s_i.y_j, y_i.y_j, s_i.g, y_i.g. Those are kept (Gram matrices, updated by one
// pass when a pair is added); the recursion then runs on k numbers and the direction is one
// pass  d = -H g + sum_j (-H al_j) y_j + (al_j - be_j) s_j  -- two passes over the history per
// step instead of 4k.
#pragma once
#include <cstdint>

#include "optkern/common.hpp"

namespace optkern {
namespace rules {

// The two-loop recursion on inner products. History rows 0..k-1, oldest first:
//   sy[i*k + j] = s_i.y_j,  yy[i*k + j] = y_i.y_j,  sg[i] = s_i.g,  yg[i] = y_i.g,  ro[i] = 1 / s_i.y_i,
//   h = the initial inverse-Hessian scale (H_diag).
// Out: al[i] (torch's `al`), and d = g_scale * g + sum_j cy[j] y_j + cs[j] s_j.
// Returns g_scale (= -h).
OK_HD double lbfgs_two_loop(int64_t k, const double* sy, const double* yy, const double* sg, const double* yg,
                            const double* ro, double h, double* al, double* cs, double* cy) {
  for (int64_t i = k - 1; i >= 0; --i) {  // s_i.q with q = -g - sum_{j>i} al_j y_j
    double sq = -sg[i];
    for (int64_t j = i + 1; j < k; ++j) sq -= al[j] * sy[i * k + j];
    al[i] = sq * ro[i];
  }
  for (int64_t i = 0; i < k; ++i) {  // y_i.r with r = h (-g - sum_j al_j y_j) + sum_{j<i} (al_j - be_j) s_j
    double yq = -yg[i];
    for (int64_t j = 0; j < k; ++j) yq -= al[j] * yy[i * k + j];
    double yr = h * yq;
    for (int64_t j = 0; j < i; ++j) yr += cs[j] * sy[j * k + i];
    cs[i] = al[i] - yr * ro[i];
  }
  for (int64_t j = 0; j < k; ++j) cy[j] = -h * al[j];
  return -h;
}

// The dot products the push pass returns, per history row j (kPushPerRow of them) and for the
// new pair itself (kPushSelf), in this order.
enum PushDot { kSnewYj = 0, kYnewSj, kYnewYj, kGSj, kGYj, kPushPerRow };
enum PushSelf { kYS = 0, kYY, kGS, kGY, kPushSelf };

// Parameter move of the line search: p = x + t d, like torch's add_(d, alpha=t). Left to the
// compiler to fuse or not (GCC's FMA clones and nvcc do): CPU and GPU agree to rounding, as tested.
template <class T> OK_HD T move(T x, T d, T t) { return x + t * d; }

// SAM's ascent step: remember w, go to w + scale g with scale = rho / (||g|| + eps).
template <class T> OK_HD void sam_perturb(T& p, T g, T& backup, T scale) {
  backup = p;
  p = p + scale * g;
}

// SAM's ascent scale; zero for rho = 0 (so w + scale g == w bit for bit).
OK_HD double sam_scale(double rho, double grad_norm, double eps) {
  return rho == 0.0 ? 0.0 : rho / (grad_norm + eps);
}

// Conjugate gradients on (A + lambda I) (hessian.cg), given y = A p: the damped product, NumPy's
// `y + lambda * p` (which rounds twice; a compiler may fuse it: agreement is to rounding, as tested).
template <class T> OK_HD T cg_damped(T y, T p, T lambda) { return lambda == T(0) ? y : y + lambda * p; }

// The iterate and residual move along p by the step alpha: x += alpha p, r -= alpha (A + lambda I) p.
template <class T> OK_HD void cg_update(T& x, T& r, T p, T ap, T alpha) {
  x = x + alpha * p;
  r = r - alpha * ap;
}

// The next search direction: p = z + beta p (z the preconditioned residual).
template <class T> OK_HD T cg_direction(T z, T p, T beta) { return z + beta * p; }

}  // namespace rules
}  // namespace optkern
