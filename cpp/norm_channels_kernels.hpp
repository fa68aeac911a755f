// The kernels of batch normalization on the CPU (cpp/norm_channels.cpp checks the arguments and
// drives them): the (N, C, S) shape and its fixed blocks of rows, the per-(block, channel) moments
// and gradient sums, the per-row/run apply and dx passes, and run(), which spreads a kernel's tasks
// over the threads. Included by norm_channels.cpp only (its anonymous namespace: one definition).
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "half_stage.hpp"
#include "norm_cpu.hpp"
#include "optkern/rules/norm.hpp"

namespace optkern {
namespace {
using namespace normcpu;

struct Shape {
  int64_t N, C, S;
  int64_t nb() const { return std::max<int64_t>(1, (int64_t(1) << 14) / (S == 1 ? C : S)); }  // rows / block
  int64_t nblk() const { return (N + nb() - 1) / nb(); }
  int64_t n0(int64_t k) const { return k * nb(); }
  int64_t n1(int64_t k) const { return std::min(N, (k + 1) * nb()); }
  int64_t size() const { return N * C * S; }
};

using half::HalfIn;  // (half_stage.hpp: a task's elements in a float32 buffer)
using half::HalfIO;
using half::HalfOut;
using half::Region;
// Block k's region (Stats, GradSum): all channels' rows when S = 1, else channel t % C's runs.
inline Region block_region(const Shape& sh, int64_t t) {
  if (sh.S == 1) {
    const int64_t k = t, n0 = sh.n0(k), len = (sh.n1(k) - n0) * sh.C;
    return {n0 * sh.C, 1, len, len};
  }
  const int64_t k = t / sh.C, c = t % sh.C, n0 = sh.n0(k);
  return {(n0 * sh.C + c) * sh.S, sh.n1(k) - n0, sh.C * sh.S, sh.S};
}
// Row t (S = 1) or run t (Apply, Dx).
inline Region row_region(const Shape& sh, int64_t t) {
  const int64_t len = sh.S == 1 ? sh.C : sh.S;
  return {t * len, 1, len, len};
}

// Corrected two-pass moments of block k (all channels when S = 1, else channel t % C).
template <class T, class P = const T*> struct StatsKernel {
  P x;
  rules::Moments<double>* part;  // [nblk][C], kept and merged in double (norm_cpu.hpp: chunk_moments)
  Shape sh;
  Region region(int64_t t) const { return block_region(sh, t); }
  void bind(P x_, P, HalfOut) { x = x_; }
  OK_INLINE void operator()(int64_t t) const {
    const int64_t C = sh.C, S = sh.S;
    if (S == 1) {
      const int64_t k = t, n0 = sh.n0(k), n1 = sh.n1(k);
      // The corrected two-pass of norm_cpu.hpp's chunk_moments across the channels: Σx in double,
      // then Σ(x - m)² in T over blocks of kBlockTerms rows, each added in double. One sum in T of a
      // channel's up to 16K squared deviations rounded every addition alike for data of few distinct
      // values (half a, half b: rstd 300 ulps off; random columns 8).
      std::vector<double> s(size_t(C), 0.0), q(size_t(C), 0.0), d(size_t(C), 0.0);
      std::vector<T> m(static_cast<size_t>(C)), qb(static_cast<size_t>(C));
      double* OK_RESTRICT sp = s.data();
      double* OK_RESTRICT qp = q.data();
      double* OK_RESTRICT dp = d.data();
      T* OK_RESTRICT mp = m.data();
      T* OK_RESTRICT bp = qb.data();
      for (int64_t n = n0; n < n1; ++n) {
        const T* OK_RESTRICT xn = x + n * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) sp[c] += double(xn[c]);
      }
      const double cnt = double(n1 - n0);
      for (int64_t c = 0; c < C; ++c) mp[c] = T(sp[c] / cnt);
      for (int64_t n = n0; n < n1; n += kBlockTerms) {
        std::fill(qb.begin(), qb.end(), T(0));
        for (int64_t j = n; j < std::min(n1, n + kBlockTerms); ++j) {
          const T* OK_RESTRICT xn = x + j * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) bp[c] += sq_dev(xn[c], mp[c]);
          if constexpr (sizeof(T) == sizeof(double)) {  // (d: norm_cpu.hpp, dev_sums)
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) dp[c] += double(xn[c] - mp[c]);
          }
        }
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) qp[c] += double(bp[c]);
      }
      for (int64_t c = 0; c < C; ++c)  // (again around the refined mean where needed: norm_cpu.hpp)
        part[k * C + c] = centred_moments<T>(cnt, sp[c], mp[c], {qp[c], dp[c]}, [&](T m) {
          return dev_sums<T>(n1 - n0, m, [&](int64_t i) {
            const T* xn = x + (n0 + i) * C;  // (x: a pointer or a half RunView)
            return xn[c];
          });
        });
      return;
    }
    // The corrected two-pass of norm_cpu.hpp's chunk_moments over the block's runs of channel c.
    const int64_t k = t / C, c = t % C, n0 = sh.n0(k), n1 = sh.n1(k);
    double s = 0;
    for (int64_t n = n0; n < n1; ++n) {
      const T* OK_RESTRICT xn = x + (n * C + c) * S;
      // The runs of one channel lie C * S apart: prefetch the next one.
      prefetch_row(xn + C * S, n + 1 < n1 ? S : 0);
      s += lane_sum<double>(S, [&](int64_t i) { return double(xn[i]); });
    }
    const double cnt = double((n1 - n0) * S);
    const auto dev = [&](T m) {
      std::pair<double, double> qd{0.0, 0.0};
      for (int64_t n = n0; n < n1; ++n) {
        const T* OK_RESTRICT xn = x + (n * C + c) * S;
        const auto r = dev_sums<T>(S, m, [&](int64_t i) { return xn[i]; });
        qd.first += r.first, qd.second += r.second;
      }
      return qd;
    };
    const T m = T(s / cnt);
    part[t] = centred_moments<T>(cnt, s, m, dev(m), dev);
  }
};

// Σ dy and Σ dy x̂ of block k (all channels when S = 1, else channel t % C), in double: a block
// holds up to 16K / S runs (rows when S = 1) of a channel, one after the other. (A float32 sum of the
// runs' sums, then of the blocks', rounded thousands of additions alike: with dy = 1 + small, db was
// ~2e-6 off and dx, whose mean(g) subtracts it, 4e-5 of its size at (4096, 2, 4), 20-40x torch's.)
template <class T, class P = const T*> struct GradSumKernel {
  P dy, x;
  const T *mean, *rstd;
  double *sdy, *sdyx;  // [nblk][C]
  Shape sh;
  const T* ns;  // S = 1: ChannelScaling's data, null when no channel needs it (norm_cpu.hpp)
  const T* lo;  // S > 1: the channels' mean low parts (rules::mean_lo), null when none needs one
  Region region(int64_t t) const { return block_region(sh, t); }
  void bind(P x_, P dy_, HalfOut) { x = x_, dy = dy_; }
  OK_INLINE void operator()(int64_t t) const {
    const int64_t C = sh.C, S = sh.S;
    if (S == 1) {
      // Each channel's sums are sequential over up to 16K rows: in double (in float32 Σ dy x̂, whose
      // terms cancel, kept ~ε √N |dy| of them: with dy = 10 + small several % of dweight)
      const int64_t k = t;
      std::vector<double> sa(size_t(C), 0.0), sb(size_t(C), 0.0);
      double* OK_RESTRICT a = sa.data();
      double* OK_RESTRICT b = sb.data();
      for (int64_t n = sh.n0(k); n < sh.n1(k); ++n) {
        const T* OK_RESTRICT g = dy + n * C;
        const T* OK_RESTRICT xn = x + n * C;
        if (ns) {  // (rare: a channel whose x - mean may overflow, or far from 0)
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            a[c] += double(g[c]);
            b[c] += double(g[c] * channel_xhat(xn[c], ns, C, c));
          }
          continue;
        }
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          a[c] += double(g[c]);
          b[c] += double(g[c] * rules::normalize(xn[c], mean[c], rstd[c]));
        }
      }
      for (int64_t c = 0; c < C; ++c) sdy[k * C + c] = a[c], sdyx[k * C + c] = b[c];
      return;
    }
    const int64_t k = t / C, c = t % C;
    // A run's S terms by block_sums (float blocks of 8 terms a lane, added in double), the runs in
    // double: in T lanes, float32 runs of 32768 with dy = 1 + 0.01 N had dγ 7.2e-5 and dx 8.4e-6
    // relative off the exact sums (tests/test_hunt44h_bn_grad_sums.py)
    double a = 0, b = 0;
    with_normalizer(mean[c], rstd[c], lo, c, [&](const auto& nz) OK_INLINE_LAMBDA {
      for (int64_t n = sh.n0(k); n < sh.n1(k); ++n) {
        const T* OK_RESTRICT g = dy + (n * C + c) * S;
        const T* OK_RESTRICT xn = x + (n * C + c) * S;
        prefetch_row(g + C * S, n + 1 < sh.n1(k) ? S : 0);
        prefetch_row(xn + C * S, n + 1 < sh.n1(k) ? S : 0);
        double r[2];  // Σ dy, Σ dy x̂ over the run
        block_sums<2, T>(S, [&](int64_t i, T* v) OK_INLINE_LAMBDA {
          v[0] = g[i];
          v[1] = g[i] * rules::normalize(xn[i], nz);
        }, r);
        a += r[0];
        b += r[1];
      }
    });
    sdy[t] = a;
    sdyx[t] = b;
  }
};

// Eval mode's per-channel (alpha, beta) (rules::eval_fold of the running statistics and γ, β), and
// the channels that keep (x - mean) r γ + β (plain: far from 0, or an overflowed fold;
// rules::eval_fold_used).
template <class T> struct EvalFolds {
  std::vector<T> alpha, beta;
  std::vector<char> plain;
  bool any_plain = false;
  EvalFolds(const T* mean, const T* r, const T* w, const T* b, int64_t C)
      : alpha(size_t(C)), beta(size_t(C)), plain(size_t(C)) {
    for (int64_t c = 0; c < C; ++c) {
      const auto f = rules::eval_fold(mean[c], r[c], w[c], b[c]);
      alpha[size_t(c)] = f.alpha, beta[size_t(c)] = f.beta;
      plain[size_t(c)] = !rules::eval_fold_used(mean[c], r[c], f);
      any_plain |= plain[size_t(c)] != 0;
    }
  }
};

// y = γ x̂ + β for row n (S = 1) or run (n, c) = t (S > 1).
template <class T, class P = const T*, class Q = T*> struct ApplyKernel {
  P x;
  const T *mean, *rstd, *w, *b;
  Q y;
  Shape sh;
  bool stream;  // non-temporal stores of y (large outputs)
  const T* ns;  // S = 1: ChannelScaling's data, or null
  const T* lo;  // S > 1: the channels' mean low parts (rules::mean_lo), or null
  const EvalFolds<T>* fold;  // eval mode (fixed statistics): torch's folded form, or null
  Region region(int64_t t) const { return row_region(sh, t); }
  void bind(P x_, P, Q y_) { x = x_, y = y_; }
  OK_INLINE void operator()(int64_t t) const {
    if (fold) return folded(t);
    if (sh.S == 1) {
      const T* OK_RESTRICT xn = x + t * sh.C;
      if (ns) {  // (rare: a channel whose x - mean may overflow, or far from 0)
        write_row(y + t * sh.C, sh.C, stream, [&](int64_t c) OK_INLINE_LAMBDA {
          return rules::affine(channel_xhat(xn[c], ns, sh.C, c), w[c], b[c]);
        });
        return;
      }
      write_row(y + t * sh.C, sh.C, stream, [&](int64_t c) OK_INLINE_LAMBDA {
        return rules::affine(rules::normalize(xn[c], mean[c], rstd[c]), w[c], b[c]);
      });
      return;
    }
    const int64_t c = t % sh.C;
    const T wc = w[c], bc = b[c];
    const T* OK_RESTRICT xn = x + t * sh.S;
    with_normalizer(mean[c], rstd[c], lo, c, [&](const auto& nz) OK_INLINE_LAMBDA {
      write_row(y + t * sh.S, sh.S, stream,
                [&](int64_t i) OK_INLINE_LAMBDA { return rules::affine(rules::normalize(xn[i], nz), wc, bc); });
    });
  }

  // y = fma(x, alpha, beta) (rules::eval_fold); a plain channel (EvalFolds), the plain form.
  OK_INLINE void folded(int64_t t) const {
    const T *alpha = fold->alpha.data(), *beta = fold->beta.data();
    if (sh.S == 1) {
      const T* OK_RESTRICT xn = x + t * sh.C;
      if (!fold->any_plain) {
        write_row(y + t * sh.C, sh.C, stream,
                  [&](int64_t c) OK_INLINE_LAMBDA { return rules::eval_apply(xn[c], alpha[c], beta[c]); });
        return;
      }
      write_row(y + t * sh.C, sh.C, stream, [&](int64_t c) OK_INLINE_LAMBDA {
        if (!fold->plain[size_t(c)]) return rules::eval_apply(xn[c], alpha[c], beta[c]);
        const T xh = ns ? channel_xhat(xn[c], ns, sh.C, c) : rules::normalize(xn[c], mean[c], rstd[c]);
        return rules::affine(xh, w[c], b[c]);
      });
      return;
    }
    const int64_t c = t % sh.C;
    if (fold->plain[size_t(c)]) {
      const T wc = w[c], bc = b[c];
      const T* OK_RESTRICT xn = x + t * sh.S;
      return with_normalizer(mean[c], rstd[c], [&](const auto& nz) OK_INLINE_LAMBDA {
        write_row(y + t * sh.S, sh.S, stream,
                  [&](int64_t i) OK_INLINE_LAMBDA { return rules::affine(rules::normalize(xn[i], nz), wc, bc); });
      });
    }
    const T a = alpha[c], bt = beta[c];
    const T* OK_RESTRICT xn = x + t * sh.S;
    write_row(y + t * sh.S, sh.S, stream, [&](int64_t i) OK_INLINE_LAMBDA { return rules::eval_apply(xn[i], a, bt); });
  }
};

// dx = r (g - mean(g) - x̂ mean(g x̂)), g = γ dy; mg, mgx per channel (zero in eval mode: eval()).
template <class T, class P = const T*, class Q = T*> struct DxKernel {
  P dy, x;
  const T *mean, *rstd, *w, *mg, *mgx;
  Q dx;
  Shape sh;
  bool stream;  // non-temporal stores of dx (large outputs)
  const T* ns;  // S = 1: ChannelScaling's data, or null
  const T* lo;  // the channels' mean low parts (rules::mean_lo), or null (S = 1: in ns; the redos)
  bool training;
  char* bad;  // bad[t]: a dx of task t is not finite (redone: redo_channels)
  Region region(int64_t t) const { return row_region(sh, t); }
  void bind(P x_, P dy_, Q dx_) { x = x_, dy = dy_, dx = dx_; }
  OK_INLINE void operator()(int64_t t) const { bad[t] = !dx_finite(t); }
  OK_INLINE bool dx_finite(int64_t t) const {
    if (!training) return eval(t);
    if (sh.S == 1) {
      const T* OK_RESTRICT g = dy + t * sh.C;
      const T* OK_RESTRICT xn = x + t * sh.C;
      if (ns) {  // (rare: a channel whose x - mean may overflow, or far from 0)
        return write_row_finite(dx + t * sh.C, sh.C, stream, [&](int64_t c) OK_INLINE_LAMBDA {
          const T xh = channel_xhat(xn[c], ns, sh.C, c);
          return rules::norm_dx(g[c], w[c], xh, rstd[c], mg[c], mgx[c]);
        });
      }
      return write_row_finite(dx + t * sh.C, sh.C, stream, [&](int64_t c) OK_INLINE_LAMBDA {
        return rules::norm_dx(g[c], w[c], rules::normalize(xn[c], mean[c], rstd[c]), rstd[c], mg[c], mgx[c]);
      });
    }
    const int64_t c = t % sh.C;
    const T rs = rstd[c], wc = w[c], a = mg[c], b = mgx[c];
    const T* OK_RESTRICT g = dy + t * sh.S;
    const T* OK_RESTRICT xn = x + t * sh.S;
    bool ok = true;
    with_normalizer(mean[c], rs, lo, c, [&](const auto& nz) OK_INLINE_LAMBDA {
      ok = write_row_finite(dx + t * sh.S, sh.S, stream, [&](int64_t i) OK_INLINE_LAMBDA {
        return rules::norm_dx(g[i], wc, rules::normalize(xn[i], nz), rs, a, b);
      });
    });
    return ok;
  }
  // Eval mode: dx = r dy γ (the means are constants) needs no x̂ -- formed, a NaN x or an x̂ past
  // the dtype's range times the zero mean(g x̂) made dx NaN where torch's is finite. x̂ = 0 here
  // gives the same bits as the formula's for every finite x̂.
  OK_INLINE bool eval(int64_t t) const {
    const bool rows = sh.S == 1;
    const int64_t len = rows ? sh.C : sh.S, c0 = t % sh.C;
    const T* OK_RESTRICT g = dy + t * len;
    return write_row_finite(dx + t * len, len, stream, [&](int64_t i) OK_INLINE_LAMBDA {
      const int64_t c = rows ? i : c0;
      return rules::norm_dx(g[i], w[c], T(0), rstd[c], T(0), T(0));
    });
  }
};

OK_NORM_CLONE_RANGE(StatsKernel)
OK_NORM_CLONE_RANGE(GradSumKernel)
OK_NORM_CLONE_RANGE(ApplyKernel)
OK_NORM_CLONE_RANGE(DxKernel)

OK_CLONES void run_range(const StatsKernel<float, HalfIn>& k, const HalfIO& h, int64_t t0, int64_t t1) {
  half::tasks(k, h, t0, t1);
}
OK_CLONES void run_range(const GradSumKernel<float, HalfIn>& k, const HalfIO& h, int64_t t0, int64_t t1) {
  half::tasks(k, h, t0, t1);
}
OK_CLONES void run_range(const ApplyKernel<float, HalfIn, HalfOut>& k, const HalfIO& h, int64_t t0, int64_t t1) {
  half::tasks(k, h, t0, t1);
}
OK_CLONES void run_range(const DxKernel<float, HalfIn, HalfOut>& k, const HalfIO& h, int64_t t0, int64_t t1) {
  half::tasks(k, h, t0, t1);
}

// Run kernel(t) for t in [0, n) (one task per block/channel or per run); h: half storage's arrays
// (null: the kernel's own pointers).
template <class K> void run(const K& k, const HalfIO* h, int64_t n, int64_t work) {
  if (n <= 0) return;
  const int64_t per = std::max<int64_t>(1, n / 256);
  const int64_t nr = (n + per - 1) / per;
  parallel_for(nr, work, [&](int64_t r) {
    if constexpr (std::is_same_v<decltype(k.x), HalfIn>) run_range(k, *h, r * per, std::min(n, (r + 1) * per));
    else run_range(k, r * per, std::min(n, (r + 1) * per));
  });
}

// Run kernel(t) for t in [0, n) (one task per block/channel or per run).
template <class K> void run(const K& k, int64_t n, int64_t work) {
  if (n <= 0) return;
  const int64_t per = std::max<int64_t>(1, n / 256);
  const int64_t nr = (n + per - 1) / per;
  parallel_for(nr, work, [&](int64_t r) { run_range(k, r * per, std::min(n, (r + 1) * per)); });
}

int64_t tasks(const Shape& sh) { return sh.S == 1 ? sh.nblk() : sh.nblk() * sh.C; }

}  // namespace
}  // namespace optkern
