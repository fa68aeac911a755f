// Softmax cross-entropy over one row of logits, with label smoothing and a
// confidence penalty: the single source of the math for cpp/nn.cpp and
// cuda/nn.cu (one row per loop iteration / per thread).
//
// With p = softmax(z), log p = z - lse(z), targets q = (1 - eps) e_y + eps / C
// and entropy H = -sum p log p, the row loss is
//   l = -sum_c q_c log p_c - beta H(p)
// its gradient (scaled by `scale`, e.g. 1 / N for a batch mean) is
//   dl/dz = p - q + beta p (log p + H)
// and its Hessian-vector product with r (the R-operator of the gradient) is
//   s = p (r - <p, r>),   R{H} = -sum s log p,
//   R{dl/dz} = s + beta (s (log p + H + 1) + p R{H}).
// Log-probabilities are formed as z - lse, so p = 0 never produces 0 * log 0. A logit of -inf
// (a masked class: p = 0, log p = -inf) adds nothing where p multiplies log p (the limit p log p -> 0,
// as torch's log_softmax and its gradient give): those terms are skipped where p = 0, as is the
// smoothing term when eps = 0, so the loss and gradient of the other classes stay finite.
#pragma once
#include <cstdint>

#include "optkern/rules/activation.hpp"

namespace optkern {
namespace rules {

template <class T> struct XentHP {
  T smoothing;  // eps in [0, 1]
  T penalty;    // beta (confidence penalty weight)
  T scale;      // multiplies the gradient and its R-operator
};

// Loss of one row; writes log p (if logp) and the scaled gradient (if g).
// A label outside [0, C) gives NaN and writes nothing (callers validate first).
template <class T>
OK_HD T xent_row(const T* z, int64_t C, int64_t y, const XentHP<T>& h, T* logp, T* g) {
  using namespace nnmath;
  if (y < 0 || y >= C) return T(NAN);
  T m = z[0];
  for (int64_t c = 1; c < C; ++c) m = z[c] > m ? z[c] : m;
  T s = T(0), t = T(0), sz = T(0);  // sum e, sum e (z - m), sum z
  for (int64_t c = 0; c < C; ++c) {
    const T d = z[c] - m;
    const T e = exp_(d);
    s += e;
    t = e > T(0) ? fma_t(e, d, t) : t;  // (e d = 0 d -> 0 where d = -inf)
    sz += z[c];
  }
  const T logs = log_(s);
  const T lse = m + logs;
  const T H = logs - t / s;
  const T sum_logp = fma_t(-T(C), lse, sz);
  const T eps_c = h.smoothing / T(C);
  const T nll = -(T(1) - h.smoothing) * (z[y] - lse);
  const T smoothed = h.smoothing != T(0) ? fma_t(-eps_c, sum_logp, nll) : nll;  // (0 (-inf) when eps = 0)
  const T loss = h.penalty != T(0) ? fma_t(-h.penalty, H, smoothed) : smoothed;
  if (logp || g) {
    for (int64_t c = 0; c < C; ++c) {
      const T lp = z[c] - lse;
      if (logp) logp[c] = lp;
      if (g) {
        const T p = exp_(lp);
        const T q = eps_c + (c == y ? T(1) - h.smoothing : T(0));
        g[c] = h.scale * (p > T(0) ? fma_t(h.penalty * p, lp + H, p - q) : p - q);
      }
    }
  }
  return loss;
}

// R{dl/dz} for one row given its log-probabilities and r = R{z}.
template <class T> OK_HD void xent_rop_row(const T* logp, const T* r, int64_t C, const XentHP<T>& h, T* out) {
  using namespace nnmath;
  T pr = T(0), plp = T(0), prlp = T(0);  // <p, r>, sum p log p, sum p r log p
  for (int64_t c = 0; c < C; ++c) {
    const T p = exp_(logp[c]);
    pr = fma_t(p, r[c], pr);
    if (h.penalty != T(0) && p > T(0)) {
      plp = fma_t(p, logp[c], plp);
      prlp = fma_t(p * r[c], logp[c], prlp);
    }
  }
  const T H = -plp;
  const T RH = fma_t(pr, plp, -prlp);  // -sum p (r - <p,r>) log p
  for (int64_t c = 0; c < C; ++c) {
    const T p = exp_(logp[c]);
    const T s = p * (r[c] - pr);
    T v = s;
    if (h.penalty != T(0) && p > T(0)) v = fma_t(h.penalty, fma_t(s, logp[c] + H + T(1), p * RH), v);
    out[c] = h.scale * v;
  }
}

}  // namespace rules
}  // namespace optkern
