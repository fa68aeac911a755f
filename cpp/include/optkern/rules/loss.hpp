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
// Log-probabilities are formed as (z - max) - log sum e^(z - max), so p = 0 never produces 0 * log 0.
// A logit of -inf (a masked class: p = 0, log p = -inf) adds nothing where p multiplies log p (the
// limit p log p -> 0, as torch's log_softmax and its gradient give): those terms are skipped where
// p = 0, as is the smoothing term when eps = 0, so the loss and gradient of the other classes stay
// finite.
#pragma once
#include <cstdint>

#include "optkern/rules/activation.hpp"
#include "optkern/rules/norm.hpp"  // (finite_, max_abs, scale_exp, scale2)

namespace optkern {
namespace rules {

template <class T> struct XentHP {
  T smoothing;  // eps in [0, 1]
  T penalty;    // beta (confidence penalty weight)
  T scale;      // multiplies the gradient and its R-operator
};

// Loss of one row; writes log p (if logp) and the scaled gradient (if g).
// A label outside [0, C) gives NaN, and NaN in its row of logp and g: the CPU refuses such labels
// before any row is written, the GPU cannot (a host check of device labels is a synchronization),
// and its rows of logp and g were left unwritten -- uninitialized memory returned as results.
// log p is formed as (z - m) - log s (m the row's max, s = sum e^(z - m)), as torch's log_softmax
// forms it: z - (m + log s) lost log s to rounding where |m| >> log s (float32 logits [1e8, 1e8]
// gave log p = [0, 0], loss 0 and gradient [0, 1] for label 0, not log 2 and [-1/2, 1/2]).
// sum log p = sum (z - m) - C log s likewise: sum z - C lse was inf - inf = NaN for logits near the
// dtype's max (and lost digits to cancellation for large ones).
template <class T>
OK_HD T xent_row(const T* z, int64_t C, int64_t y, const XentHP<T>& h, T* logp, T* g) {
  using namespace nnmath;
  if (y < 0 || y >= C) {
    for (int64_t c = 0; c < C; ++c) {
      if (logp) logp[c] = T(NAN);
      if (g) g[c] = T(NAN);
    }
    return T(NAN);
  }
  T m = z[0];
  for (int64_t c = 1; c < C; ++c) m = z[c] > m ? z[c] : m;
  // (sums in double whatever T, as the norm statistics: float32 sums lost digits as C grew, a float32
  // loss over 10^6 classes off by ~2e-6 relative, 30x torch's)
  double s = 0, t = 0, sd = 0;  // sum e, sum e d, sum d (d = z - m)
  for (int64_t c = 0; c < C; ++c) {
    const T d = z[c] - m;
    const T e = exp_(d);
    s += double(e);
    t = e > T(0) ? fma_t(double(e), double(d), t) : t;  // (e d = 0 d -> 0 where d = -inf)
    sd += double(d);
  }
  const double logs_d = log_(s);
  const T logs = T(logs_d);
  const T H = T(logs_d - t / s);
  const T sum_logp = T(fma_t(-double(C), logs_d, sd));
  const T eps_c = h.smoothing / T(C);
  const T nll = -(T(1) - h.smoothing) * ((z[y] - m) - logs);
  const T smoothed = h.smoothing != T(0) ? fma_t(-eps_c, sum_logp, nll) : nll;  // (0 (-inf) when eps = 0)
  const T loss = h.penalty != T(0) ? fma_t(-h.penalty, H, smoothed) : smoothed;
  if (logp || g) {
    for (int64_t c = 0; c < C; ++c) {
      const T lp = (z[c] - m) - logs;
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

// One pass of the R-operator over a row: out[c] = fin(c, v_c), v = (d^2 l / dz^2) rr with rr[c] = rv(c)
// (r itself, or r scaled by a power of two).
template <class T, class RV, class Fin>
OK_HD void xent_rop_pass(const T* logp, RV rv, int64_t C, T penalty, Fin fin) {
  using namespace nnmath;
  // (sums in double whatever T, as in xent_row: float32 sums put a float32 product over 10^6 classes
  // with beta = 0.3 off by ~4e-5 of its largest entry)
  double pr_d = 0, plp = 0, prlp = 0;  // <p, r>, sum p log p, sum p r log p
  for (int64_t c = 0; c < C; ++c) {
    const T p = exp_(logp[c]);
    pr_d = fma_t(double(p), double(rv(c)), pr_d);
    if (penalty != T(0) && p > T(0)) {
      plp = fma_t(double(p), double(logp[c]), plp);
      prlp = fma_t(double(p) * double(rv(c)), double(logp[c]), prlp);
    }
  }
  const T pr = T(pr_d);
  const T H = T(-plp);
  const T RH = T(fma_t(pr_d, plp, -prlp));  // -sum p (r - <p,r>) log p
  for (int64_t c = 0; c < C; ++c) {
    const T p = exp_(logp[c]);
    const T s = p * (rv(c) - pr);
    T v = s;
    if (penalty != T(0) && p > T(0)) v = fma_t(penalty, fma_t(s, logp[c] + H + T(1), p * RH), v);
    fin(c, v);
  }
}

// R{dl/dz} for one row given its log-probabilities and r = R{z}.
// Directions near the dtype's max: r - <p, r> (up to 2 max|r|), s (log p + H + 1) and sum p r log p
// overflowed where the result is in range (|s_c| <= max|r| / 2 always): float32 r = [3.4e38, -3.4e38,
// 1.7e38] on equal logits gave [9.5e37, -inf, 3.8e37], exactly [9.5e37, -1.3e38, 3.8e37]. The result is
// linear in r, so a row that came out non-finite is computed again with r scaled by 2^-k (exact;
// max|r| 2^-k in [1, 2)) and scaled back, as the norm R-operator does (norm_rop.hpp): other rows keep
// their bits, and a non-finite r (NaN in, NaN out) or one below 1 (not a range problem of r) keeps the
// plain result. Where v itself is out of range, scale * v may not be: then formed at the scale of v.
template <class T> OK_HD void xent_rop_row(const T* logp, const T* r, int64_t C, const XentHP<T>& h, T* out) {
  T bad = T(0);  // NaN or inf once any output is non-finite
  xent_rop_pass(logp, [&](int64_t c) { return r[c]; }, C, h.penalty, [&](int64_t c, T v) {
    out[c] = h.scale * v;
    bad += out[c] - out[c];
  });
  if (rules::finite_(bad)) return;
  T amax = T(0);
  for (int64_t c = 0; c < C; ++c) amax = rules::max_abs(amax, r[c]);
  if (!rules::finite_(amax) || amax < T(1)) return;
  const int k = rules::scale_exp(amax);
  xent_rop_pass(logp, [&](int64_t c) { return rules::scale2(r[c], -k); }, C, h.penalty, [&](int64_t c, T v) {
    const T w = rules::scale2(v, k);
    out[c] = rules::finite_(w) ? h.scale * w : rules::scale2(h.scale * v, k);
  });
}

}  // namespace rules
}  // namespace optkern
