// Sharpness-aware minimization's two extra passes (Foret et al. 2021), over many arrays in one
// call each: the ascent step  backup = w, w += rho g / (||g|| + eps)  (the global norm first,
// deterministic, then one fused pass; adaptive SAM, Kwon et al. 2021: w += rho w^2 g / (||w g|| +
// eps)) and the return  w = backup  (exact: the descent step starts from the very bits of w).
// ||g|| is exact over double's range: a sum of squares that overflowed or underflowed is taken again
// scaled by a power of two (rules::sam_norm_term_scaled; a gradient in range pays nothing more).
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "multi_tensor.hpp"
#include "optkern/rules/second_order.hpp"
#include "optkern/signatures_second_order.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace {

// One chunk of the ascent step, per ISA clone like every element loop.
template <class T>
OK_CLONES void perturb_loop(T* OK_RESTRICT p, const T* OK_RESTRICT g, T* OK_RESTRICT bk, rules::SamScale<T> s,
                            bool adaptive, int64_t n) {
  const T scale = s.m;
  if (scale == T(0)) {  // rho = 0: w stays bitwise (w + 0 g would turn -0 into +0, NaN g into NaN)
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) bk[i] = p[i];
  } else if (s.k != 0) {  // (a scale past T's range: a norm near underflow, rules::sam_scale_split)
    for (int64_t i = 0; i < n; ++i) rules::sam_perturb_split(p[i], g[i], bk[i], s, adaptive);
  } else if (adaptive) {
    // the vector loop as before, keeping the extremes of |w|, |w^2 g| and the least nonzero |w|, |g|;
    // where they leave the range (rare: tiny or huge weights) the entries whose w^2 g did are stepped
    // again from their backups by the scaled rule, as the GPU steps them (rules::sam_adaptive_clean)
    const T inf = T(INFINITY);
    T w_max = 0, x_max = 0, w_min = inf, g_min = inf;
#pragma omp simd reduction(max : w_max, x_max) reduction(min : w_min, g_min)
    for (int64_t i = 0; i < n; ++i) {
      const T w = p[i], gi = g[i], aw = std::fabs(w), x = std::fabs((w * w) * gi);
      w_max = rules::sam_extreme_max(w_max, aw);
      x_max = rules::sam_extreme_max(x_max, x);
      w_min = rules::sam_extreme_min_nonzero(w_min, aw);
      g_min = rules::sam_extreme_min_nonzero(g_min, T(std::fabs(gi)));
      rules::sam_perturb_adaptive(p[i], gi, bk[i], scale);
    }
    const bool rare = !rules::sam_adaptive_clean(rules::SamAdaptiveExtremes<T>{w_max, x_max, w_min, g_min});
    for (int64_t i = 0; rare && i < n; ++i) {
      if (rules::sam_adaptive_direct(bk[i], g[i])) continue;
      p[i] = bk[i];
      rules::sam_perturb_adaptive_checked(p[i], g[i], bk[i], scale);
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) rules::sam_perturb(p[i], g[i], bk[i], scale);
  }
}

// max |term| over the lists, NaN if any term is NaN (the rescan's scale; a rare path: no clones).
template <class T, class F> double max_term(const F& term, const ArrayList& A, const ArrayList& B) {
  const auto chunks = make_chunks(A.size);
  py::gil_scoped_release nogil;
  return fold_chunks(
      chunks, 2 * total_size(A.size), 0.0,
      [&](const Chunk& c) {
        const T* a = A.ptr<T>(size_t(c.tensor)) + c.start;
        const T* b = B.ptr<T>(size_t(c.tensor)) + c.start;
        double m = 0.0;
        for (int64_t i = 0; i < c.len; ++i) m = rules::max_abs(m, term(a[i], b[i]));
        return m;
      },
      [](double x, double y) { return rules::max_abs(x, y); });
}

// ||term(a, g)|| = sqrt(ssq) 2^e when rescanned (ssq = 0: not; the scale reads ssq and e:
// rules::sam_scale_rescanned).
struct AscentNorm {
  double norm, ssq;
  int e;
};

// ||term(a, g)|| over the lists: sqrt of the plain sum of squares when it is in range (one pass,
// as before), else the squares summed again scaled (rules::sam_norm_term_scaled: two more passes,
// only for a gradient out of double's range). A zero, NaN or Inf term keeps the direct norm.
template <class T, bool kAdaptive> AscentNorm ascent_norm(const ArrayList& A, const ArrayList& G) {
  const auto term = [](T a, T g) { return rules::sam_norm_term(double(a), double(g), kAdaptive); };
  const double s = sum_lists<T>([=](T a, T g) { return Square{term(a, g)}; }, A, G);
  if (rules::lanczos_sumsq_direct<T>(s)) return {std::sqrt(s), 0.0, 0};
  const bool up = rules::sam_rescan_up(s);  // (ASAM's max: rules::sam_norm_term_max)
  const auto mterm = [=](T a, T g) { return rules::sam_norm_term_max(double(a), double(g), kAdaptive, up); };
  const double amax = max_term<T>(mterm, A, G);
  if (!rules::finite_(amax) || amax == 0.0) return {std::sqrt(s), 0.0, 0};
  const int e = rules::sam_rescan_exp(amax, kAdaptive, up);
  const double ssq = sum_lists<T>(
      [=](T a, T g) { return Square{rules::sam_norm_term_scaled(double(a), double(g), kAdaptive, e)}; }, A, G);
  return {rules::norm_scaled(ssq, e), ssq, e};
}

double sam_perturb(py::handle params, py::handle grads, py::handle backups, const checks::Real& rho_arg,
                   const checks::Real& eps_arg, py::handle out, checks::Flag adaptive_arg) {
  const bool adaptive = checks::flag(adaptive_arg, "adaptive");
  const std::pair<double, double> given = sig::sam_scalars(rho_arg, eps_arg);
  const double rho = given.first, eps = given.second;
  const py::dtype dt = list_dtype(params, "params");
  const Lists L = gather_lists(params, grads, {{"backups", backups, false}}, dt);
  double* buf = scalar_buffer(out, "out", true);
  const ArrayList b = scalar_as_list(buf, size_t(dt.itemsize()));
  // (out: a lone array, named without an index, as the CUDA module names it)
  check_no_overlap({{"params", &L.p, true},
                    {"grads", &L.g, false},
                    {"backups", &L.s[0], true},
                    {"out", &b, true, true, size_t(dt.itemsize())}},
                   size_t(dt.itemsize()));
  double norm = 0.0;
  dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    // plain SAM reads only g for its norm (the params' stream only where ASAM needs it)
    const AscentNorm an = adaptive ? ascent_norm<T, true>(L.p, L.g) : ascent_norm<T, false>(L.g, L.g);
    norm = an.norm;
    const auto scale = rules::sam_scale_rescanned<T>(rho, an.norm, eps, an.ssq, an.e);
    const auto chunks = make_chunks(L.p.size);
    py::gil_scoped_release nogil;
    for_each_chunk(chunks, 3 * total_size(L.p.size), [&](const Chunk& c) {  // p, g, backup
      T* OK_RESTRICT p = L.p.ptr<T>(size_t(c.tensor)) + c.start;
      const T* OK_RESTRICT g = L.g.ptr<T>(size_t(c.tensor)) + c.start;
      T* OK_RESTRICT bk = L.s[0].ptr<T>(size_t(c.tensor)) + c.start;
      perturb_loop(p, g, bk, scale, adaptive, c.len);
    });
  });
  *buf = norm;
  return norm;
}

void sam_restore(py::handle params, py::handle backups) {
  const py::dtype dt = list_dtype(params, "params");
  const ArrayList P = gather(params, "params", dt, true);
  const ArrayList B = gather(backups, "backups", dt, false, &P.size);
  check_no_overlap({{"params", &P, true}, {"backups", &B, false}}, size_t(dt.itemsize()));
  dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const auto chunks = make_chunks(P.size);
    py::gil_scoped_release nogil;
    for_each_chunk(chunks, 2 * total_size(P.size), [&](const Chunk& c) {  // p, backup
      T* OK_RESTRICT p = P.ptr<T>(size_t(c.tensor)) + c.start;
      const T* OK_RESTRICT bk = B.ptr<T>(size_t(c.tensor)) + c.start;
#pragma omp simd
      for (int64_t i = 0; i < c.len; ++i) p[i] = bk[i];
    });
  });
}

}  // namespace

void register_sam(py::module_& m) { sig::sam(m, &sam_perturb, &sam_restore); }

}  // namespace optkern
