// Row normalizations on the CPU: layer norm, RMS norm, group norm and instance norm are one loop. x is
// (R, M) with M = Cg * S; row r uses the affine entries (r % G) * Cg + c for its c-th run of S elements
//   layer / RMS norm: G = 1, Cg = M, S = 1      group norm: R = N G, Cg = C / G
//   instance norm:    G = C, Cg = 1, S = spatial
// Rows go to OpenMP threads whole and each row is reduced in a fixed order, so results are bitwise
// identical for any thread count. Parameter gradients are summed per fixed block of rows, then over
// blocks in order.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "half_stage.hpp"
#include "py_arrays.hpp"
#include "norm_cpu.hpp"
#include "optkern/norm_layout.hpp"
#include "optkern/rules/norm.hpp"
#include "optkern/signatures.hpp"
#include "optkern/scalar_checks.hpp"

namespace optkern {
namespace {
namespace py = pybind11;
using namespace normcpu;

template <class T> struct RowArgs {
  const T *x, *w, *b;  // w, b: never null (ones / zeros stand in)
  T *y, *mean, *rstd;  // mean: null for RMS norm
  int64_t R, G, Cg, S;
  T eps;
  bool rms, stream;  // stream: non-temporal stores of y (large outputs)
};

// Row r, read from x and written to y (a.x, a.y's row; or float32 rows converted from half storage,
// a.x then null: the caller converts the next row itself).
template <class T>
OK_INLINE void row_forward(const RowArgs<T>& a, int64_t r, const T* OK_RESTRICT x, T* OK_RESTRICT y) {
  const int64_t M = a.Cg * a.S;
  T mu = T(0), rs, lo = T(0);  // lo: the mean's low part (rules::mean_lo)
  if (a.rms) {
    const double ss = sum_squares(x, M);
    if (rules::stats_ok(T(0), T(ss), a.eps)) {  // (on the sum rounded to T, as the GPU's)
      rs = T(rules::inv_rms(ss, double(M), double(a.eps)));  // (from the double ss, rounded once)
    } else {  // overflow, underflow below a tiny eps, or a non-finite x (rules/norm.hpp)
      const auto q = scaled_sum_squares<T>(M, [&](int64_t j) { return x[j]; });
      rs = rules::rsqrt_scaled(q.ssq / T(M), q.e, a.eps);
    }
  } else {
    const auto m = moments(x, M);
    if (rules::stats_ok(T(m.mean), T(m.m2), a.eps)) {
      mu = T(m.mean);
      rs = T(rules::rstd(m, double(a.eps)));
    } else {
      const auto q = scaled_moments<T>(M, [&](int64_t j) { return x[j]; });
      mu = q.mean;
      rs = rules::rsqrt_scaled(q.m2 / T(M), q.e, a.eps);
    }
    a.mean[r] = mu;
    lo = rules::mean_lo(m, mu, rs);
  }
  a.rstd[r] = rs;
  const T* OK_RESTRICT w = a.w + (r % a.G) * a.Cg;
  const T* OK_RESTRICT b = a.b + (r % a.G) * a.Cg;
  if (a.x) prefetch_row(a.x + (r + 1) * M, r + 1 < a.R ? M : 0);
  with_normalizer(mu, rs, lo, [&](const auto& nz) OK_INLINE_LAMBDA {  // (scaled where x - mu may overflow: rules/norm.hpp)
    if (a.S == 1) {
      write_row(y, M, a.stream, [&](int64_t j) OK_INLINE_LAMBDA {
        return rules::affine(rules::normalize(x[j], nz), w[j], b[j]);
      });
      return;
    }
    for (int64_t c = 0; c < a.Cg; ++c) {
      const T wc = w[c], bc = b[c];
      const T* OK_RESTRICT xc = x + c * a.S;
      write_row(y + c * a.S, a.S, a.stream,
                [&](int64_t s) OK_INLINE_LAMBDA { return rules::affine(rules::normalize(xc[s], nz), wc, bc); });
    }
  });
}

template <class T> struct RowGradArgs {
  const T *dy, *x, *w, *mean, *rstd;  // mean: null for RMS norm
  T* dx;
  double *pdw, *pdb;  // per-block partials (null: not wanted), in double as the row sums
  char* bad;                           // bad[r]: row r's dx is not finite (redone: redo_row)
  T* lo;                               // lo[r]: row r's mean low part (rules::mean_lo), for the redos
  int64_t R, G, Cg, S;
  bool rms, stream;  // stream: non-temporal stores of dx (large outputs)
};

// dx of row r, and its contributions Σ dy x̂ and Σ dy to the block partials; false when a dx
// written is not finite.
// (x, dy, dx: row r of a.x, a.dy, a.dx, or float32 rows converted from half storage)
template <class T>
OK_INLINE bool row_backward(const RowGradArgs<T>& a, int64_t r, const T* OK_RESTRICT x, const T* OK_RESTRICT dy,
                            T* OK_RESTRICT dx, ParamPartials<T>& pp) {
  double *pdw = pp.dw, *pdb = pp.db;
  T* OK_RESTRICT sw = pp.sw.empty() ? nullptr : pp.sw.data();
  T* OK_RESTRICT sb = pp.sb.empty() ? nullptr : pp.sb.data();
  const int64_t M = a.Cg * a.S;
  const T mu = a.rms ? T(0) : a.mean[r], rs = a.rstd[r];
  // (the forward's lo: the row's moments again, only where it is needed)
  const T lo = a.lo[r] = row_mean_lo(x, M, mu, rs);
  bool ok = true;
  with_normalizer(mu, rs, lo, [&](const auto& nz) OK_INLINE_LAMBDA {  // (scaled where x - mu may overflow: rules/norm.hpp)
    const int64_t w0 = (r % a.G) * a.Cg;
    const T* OK_RESTRICT w = a.w + w0;
    double sg = 0, sgx = 0;  // in double, rounded once (rules::grad_means)
    if (a.S == 1) {
      double s[2];  // Σ g, Σ g x̂ with g = γ dy
      block_sums<2, T>(M, [&](int64_t j, T* v) OK_INLINE_LAMBDA {
        v[0] = dy[j] * w[j];
        v[1] = v[0] * rules::normalize(x[j], nz);
      }, s);
      sg = s[0], sgx = s[1];
    } else {
      for (int64_t c = 0; c < a.Cg; ++c) {
        const T* OK_RESTRICT dyc = dy + c * a.S;
        const T* OK_RESTRICT xc = x + c * a.S;
        double s[2];  // Σ dy, Σ dy x̂ over the channel's run
        block_sums<2, T>(a.S, [&](int64_t i, T* v) OK_INLINE_LAMBDA {
          v[0] = dyc[i];
          v[1] = dyc[i] * rules::normalize(xc[i], nz);
        }, s);
        sg = fma_t(double(w[c]), s[0], sg);
        sgx = fma_t(double(w[c]), s[1], sgx);
        if (pdw) pdw[w0 + c] += s[1];  // (rounded to T once, after the blocks: a float32 partial of a
        if (pdb) pdb[w0 + c] += s[0];  // block's runs, then of the blocks, left dβ ulps off the exact sum)
      }
    }
    const auto mean = rules::grad_means<T>(sg, sgx, double(M), a.rms);
    const T mg = mean.g, mgx = mean.gx;
    if (a.S == 1) {
      ok = write_row_finite(dx, M, a.stream, [&](int64_t j) OK_INLINE_LAMBDA {
        return rules::norm_dx(dy[j], w[j], rules::normalize(x[j], nz), rs, mg, mgx);
      });
      if (sw || sb) {
#pragma omp simd
        for (int64_t j = 0; j < M; ++j) {
          if (sw) sw[w0 + j] += dy[j] * rules::normalize(x[j], nz);
          if (sb) sb[w0 + j] += dy[j];
        }
      }
      return;
    }
    for (int64_t c = 0; c < a.Cg; ++c) {
      const T wc = w[c];
      const T* OK_RESTRICT dyc = dy + c * a.S;
      const T* OK_RESTRICT xc = x + c * a.S;
      ok &= write_row_finite(dx + c * a.S, a.S, a.stream, [&](int64_t s) OK_INLINE_LAMBDA {
        return rules::norm_dx(dyc[s], wc, rules::normalize(xc[s], nz), rs, mg, mgx);
      });
    }
  });
  return ok;
}

// dy near the max (rules/norm.hpp): row r, whose dx came out non-finite, again with dy and γ scaled
// (x, dy, dx: its rows, as in row_backward; dx keeps its values where the redo writes nothing).
template <class T> void redo_row(const RowGradArgs<T>& a, int64_t r, const T* x, const T* dy, T* dx) {
  const int64_t M = a.Cg * a.S;
  const T mu = a.rms ? T(0) : a.mean[r], rs = a.rstd[r];
  const int64_t w0 = (r % a.G) * a.Cg;
  dx_group_scaled<T>(
      M, rs, a.rms,
      [&](int64_t j) { return GradElem<T>{dy[j], a.w[w0 + j / a.S], rules::normalize_safe(x[j], mu, a.lo[r], rs)}; },
      [&](int64_t j, T v) { dx[j] = v; });
}

// dγ[i], dβ[i] again where not finite: the entry's elements are run c = i % Cg of the rows r = i / Cg + k G.
// at(e) gives element e's (dy, x).
template <class T, class At> void redo_params(const RowGradArgs<T>& a, At&& at, T* dw, T* db) {
  const int64_t M = a.Cg * a.S, W = a.G * a.Cg;
  for (int64_t i = 0; i < W; ++i) {
    if ((!dw || rules::finite_(dw[i])) && (!db || rules::finite_(db[i]))) continue;
    const int64_t g = i / a.Cg, c = i % a.Cg;
    param_sums_scaled<T>(
        (a.R / a.G) * a.S,
        [&](int64_t t) {
          const int64_t r = g + (t / a.S) * a.G, e = r * M + c * a.S + t % a.S;
          const T mu = a.rms ? T(0) : a.mean[r];
          const auto [d, v] = at(e);
          return GradElem<T>{d, T(0), rules::normalize_safe(v, mu, a.lo[r], a.rstd[r])};
        },
        dw ? dw + i : nullptr, db ? db + i : nullptr);
  }
}

// Multi-versioned row loops (GCC target_clones needs plain functions).
OK_CLONES void rows_fwd(const RowArgs<float>& a, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) row_forward(a, r, a.x + r * a.Cg * a.S, a.y + r * a.Cg * a.S);
  if (a.stream) stream_fence();
}
OK_CLONES void rows_fwd(const RowArgs<double>& a, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) row_forward(a, r, a.x + r * a.Cg * a.S, a.y + r * a.Cg * a.S);
  if (a.stream) stream_fence();
}
OK_CLONES void rows_bwd(const RowGradArgs<float>& a, int64_t r0, int64_t r1, double* pdw, double* pdb) {
  ParamPartials<float> pp(pdw, pdb, a.G * a.Cg, a.S == 1);
  for (int64_t r = r0; r < r1; ++r, pp.row_done()) {
    const int64_t o = r * a.Cg * a.S;
    a.bad[r] = !row_backward(a, r, a.x + o, a.dy + o, a.dx + o, pp);
  }
  pp.flush();
  if (a.stream) stream_fence();
}
OK_CLONES void rows_bwd(const RowGradArgs<double>& a, int64_t r0, int64_t r1, double* pdw, double* pdb) {
  ParamPartials<double> pp(pdw, pdb, a.G * a.Cg, a.S == 1);
  for (int64_t r = r0; r < r1; ++r, pp.row_done()) {
    const int64_t o = r * a.Cg * a.S;
    a.bad[r] = !row_backward(a, r, a.x + o, a.dy + o, a.dx + o, pp);
  }
  pp.flush();
  if (a.stream) stream_fence();
}

// Half storage (h: uint16_t bits, bfloat16 or float16): each row loaded to float32 into a buffer of
// the thread's, the float32 row kernel above run on it, its output rounded to nearest even into the
// caller's row. (A conversion per element inside the kernels' loops does not vectorize: 4x slower
// in dropout; a row converted at once stays in L1 / L2 for the kernel's passes.)
struct HalfRows {
  const uint16_t *x, *dy;
  uint16_t* out;  // y or dx
  bool bf16;
};
OK_CLONES void rows_fwd_half(const RowArgs<float>& a, const HalfRows& h, int64_t r0, int64_t r1) {
  const int64_t M = a.Cg * a.S;
  std::vector<float> buf(size_t(2 * M));
  float *x = buf.data(), *y = x + M;
  for (int64_t r = r0; r < r1; ++r) {
    half::load_row(h.x + r * M, x, M, h.bf16);
    row_forward(a, r, x, y);
    half::store_row(y, h.out + r * M, M, h.bf16);
  }
}
OK_CLONES void rows_bwd_half(const RowGradArgs<float>& a, const HalfRows& h, int64_t r0, int64_t r1, double* pdw,
                             double* pdb) {
  const int64_t M = a.Cg * a.S;
  std::vector<float> buf(size_t(3 * M));
  float *x = buf.data(), *dy = x + M, *dx = dy + M;
  ParamPartials<float> pp(pdw, pdb, a.G * a.Cg, a.S == 1);
  for (int64_t r = r0; r < r1; ++r, pp.row_done()) {
    half::load_row(h.x + r * M, x, M, h.bf16);
    half::load_row(h.dy + r * M, dy, M, h.bf16);
    a.bad[r] = !row_backward(a, r, x, dy, dx, pp);
    half::store_row(dx, h.out + r * M, M, h.bf16);
  }
  pp.flush();
}
void redo_rows_half(const RowGradArgs<float>& a, const HalfRows& h) {
  const int64_t M = a.Cg * a.S;
  std::vector<float> buf;
  for (int64_t r = 0; r < a.R; ++r) {
    if (!a.bad[r]) continue;
    buf.resize(size_t(3 * M));
    float *x = buf.data(), *dy = x + M, *dx = dy + M;
    half::load_row(h.x + r * M, x, M, h.bf16);
    half::load_row(h.dy + r * M, dy, M, h.bf16);
    half::load_row(h.out + r * M, dx, M, h.bf16);  // (exact: a rounded value rounds to itself)
    redo_row(a, r, x, dy, dx);
    half::store_row(dx, h.out + r * M, M, h.bf16);
  }
}

// S: the storage type (float, double, or uint16_t for half: bf16 then says which); statistics in compute_t<S>.
template <class S>
void forward_impl(HostArgs& args, py::handle x_h, py::handle w_h, py::handle b_h, py::handle y_h,
                  py::handle mean_h, py::handle rstd_h, const RowLayout& L, double eps, bool rms, bool bf16) {
  using T = half::compute_t<S>;
  constexpr bool kHalf = !std::is_same_v<S, T>;
  const py::dtype dt = py::dtype::of<T>();  // (the statistics': float32 for half storage)
  const int64_t n = L.R * L.M();
  RowArgs<T> a{};
  const S* x = args.get<S>(x_h, "x", n, false);
  const S* w = args.opt<S>(w_h, "weight", L.W(), false);
  const S* b = args.opt<S>(b_h, "bias", L.W(), false);
  S* y = args.get<S>(y_h, "out", n, true);
  a.mean = rms ? nullptr : args.get<T>(mean_h, "mean", dt, L.R, true);
  a.rstd = args.get<T>(rstd_h, rms ? "inv_rms" : "rstd", dt, L.R, true);
  args.check_overlap();
  const half::Params<S> wp(w, L.W(), T(1), bf16), bp(b, L.W(), T(0), bf16);
  a.w = wp.p, a.b = bp.p;
  a.R = L.R, a.G = L.G, a.Cg = L.Cg, a.S = L.S, a.eps = T(eps), a.rms = rms;
  py::gil_scoped_release nogil;
  if constexpr (kHalf) {  // (the kernel writes a row buffer: no streamed stores)
    const HalfRows h{x, nullptr, y, bf16};
    parallel_ranges(L.R, L.M(), [&](int64_t r0, int64_t r1) { rows_fwd_half(a, h, r0, r1); });
  } else {
    a.x = x, a.y = y, a.stream = stream_output(n, sizeof(T));
    parallel_ranges(L.R, L.M(), [&](int64_t r0, int64_t r1) { rows_fwd(a, r0, r1); });
  }
}

void row_norm_forward(py::handle x, py::object weight, py::object bias, py::handle out, py::object mean,
                      py::handle rstd, int64_t rows, int64_t groups, int64_t group_channels, int64_t spatial,
                      double eps, checks::Flag rms_arg) {
  const bool rms = checks::flag(rms_arg, "rms");
  const py::dtype dt = float_dtype<HostArrays>(x, "x", true);
  const RowLayout L = row_layout(py::reinterpret_borrow<py::array>(x).size(), rows, groups, group_channels, spatial);
  check_norm_eps(eps, dt.itemsize() < 8);
  HostArgs args(dt);
  if (half::is_half(dt)) forward_impl<uint16_t>(args, x, weight, bias, out, mean, rstd, L, eps, rms, half::is_bf16(dt));
  else if (dt.itemsize() == 4) forward_impl<float>(args, x, weight, bias, out, mean, rstd, L, eps, rms, false);
  else forward_impl<double>(args, x, weight, bias, out, mean, rstd, L, eps, rms, false);
}

template <class S>
void backward_impl(HostArgs& args, py::handle dy_h, py::handle x_h, py::handle w_h, py::handle mean_h,
                   py::handle rstd_h, py::handle dx_h, py::handle dw_h, py::handle db_h, const RowLayout& L, bool rms,
                   bool bf16) {
  using T = half::compute_t<S>;
  constexpr bool kHalf = !std::is_same_v<S, T>;
  const py::dtype dt = py::dtype::of<T>();
  const int64_t n = L.R * L.M(), W = L.W();
  RowGradArgs<T> a{};
  const S* dy = args.get<S>(dy_h, "dy", n, false);
  const S* x = args.get<S>(x_h, "x", n, false);
  const S* w = args.opt<S>(w_h, "weight", W, false);
  a.mean = rms ? nullptr : args.get<T>(mean_h, "mean", dt, L.R, false);
  a.rstd = args.get<T>(rstd_h, rms ? "inv_rms" : "rstd", dt, L.R, false);
  S* dx = args.get<S>(dx_h, "dx", n, true);
  S* dws = args.opt<S>(dw_h, "dweight", W, true);
  S* dbs = args.opt<S>(db_h, "dbias", W, true);
  args.check_overlap();
  const half::Params<S> wp(w, W, T(1), bf16);
  a.w = wp.p;
  // Half storage: dγ, dβ (the double partials rounded to float32: W values), rounded to half at the end.
  std::vector<T> dwv(kHalf && dws ? size_t(W) : 0), dbv(kHalf && dbs ? size_t(W) : 0);
  T* const dw = kHalf ? (dws ? dwv.data() : nullptr) : reinterpret_cast<T*>(dws);
  T* const db = kHalf ? (dbs ? dbv.data() : nullptr) : reinterpret_cast<T*>(dbs);
  a.R = L.R, a.G = L.G, a.Cg = L.Cg, a.S = L.S, a.rms = rms;
  const HalfRows h{reinterpret_cast<const uint16_t*>(x), reinterpret_cast<const uint16_t*>(dy),
                   reinterpret_cast<uint16_t*>(dx), bf16};
  if constexpr (!kHalf) a.x = x, a.dy = dy, a.dx = dx, a.stream = stream_output(n, sizeof(T));
  const auto rows_of = [&](int64_t r0, int64_t r1, double* pw, double* pb) {
    if constexpr (kHalf) rows_bwd_half(a, h, r0, r1, pw, pb);
    else rows_bwd(a, r0, r1, pw, pb);
  };
  // Fixed row blocks (from the shape only) hold the parameter-gradient partials.
  // At most kGradBlocks blocks, and partials of at most ~4M values each.
  const int64_t nblk = (dw || db) ? std::min<int64_t>({L.R, kGradBlocks, std::max<int64_t>(1, (int64_t(1) << 22) / W)}) : 1;
  std::vector<double> pdw(dw ? size_t(nblk * W) : 0, 0.0), pdb(db ? size_t(nblk * W) : 0, 0.0);
  std::vector<char> bad(size_t(L.R));
  std::vector<T> lo(size_t(L.R));
  a.bad = bad.data(), a.lo = lo.data();
  py::gil_scoped_release nogil;
  if (!dw && !db) {
    parallel_ranges(L.R, L.M(), [&](int64_t r0, int64_t r1) { rows_of(r0, r1, nullptr, nullptr); });
  } else {
    parallel_for(nblk, 3 * n, [&](int64_t k) {  // dy, x, dx
      const int64_t r0 = L.R * k / nblk, r1 = L.R * (k + 1) / nblk;
      rows_of(r0, r1, dw ? pdw.data() + k * W : nullptr, db ? pdb.data() + k * W : nullptr);
    });
    parallel_for(W, nblk * W, [&](int64_t i) {
      double sw = 0, sb = 0;
      for (int64_t k = 0; k < nblk; ++k) {
        if (dw) sw += pdw[size_t(k * W + i)];
        if (db) sb += pdb[size_t(k * W + i)];
      }
      if (dw) dw[i] = T(sw);  // (rounded once)
      if (db) db[i] = T(sb);
    });
  }
  if constexpr (kHalf) {
    redo_rows_half(a, h);
    if (dw || db)
      redo_params(a, [&](int64_t e) { return std::pair<T, T>{half::load1(h.dy[e], bf16), half::load1(h.x[e], bf16)}; },
                  dw, db);
    if (dw) half::from_float(dw, reinterpret_cast<uint16_t*>(dws), W, bf16);
    if (db) half::from_float(db, reinterpret_cast<uint16_t*>(dbs), W, bf16);
  } else {
    const int64_t M = L.M();
    for (int64_t r = 0; r < L.R; ++r)
      if (a.bad[r]) redo_row(a, r, a.x + r * M, a.dy + r * M, a.dx + r * M);
    if (dw || db) redo_params(a, [&](int64_t e) { return std::pair<T, T>{a.dy[e], a.x[e]}; }, dw, db);
  }
}

void row_norm_backward(py::handle dy, py::handle x, py::object weight, py::object mean, py::handle rstd,
                       py::handle dx, py::object dweight, py::object dbias, int64_t rows, int64_t groups,
                       int64_t group_channels, int64_t spatial, checks::Flag rms_arg) {
  const bool rms = checks::flag(rms_arg, "rms");
  const py::dtype dt = float_dtype<HostArrays>(x, "x", true);
  const RowLayout L = row_layout(py::reinterpret_borrow<py::array>(x).size(), rows, groups, group_channels, spatial);
  HostArgs args(dt);
  if (half::is_half(dt))
    backward_impl<uint16_t>(args, dy, x, weight, mean, rstd, dx, dweight, dbias, L, rms, half::is_bf16(dt));
  else if (dt.itemsize() == 4) backward_impl<float>(args, dy, x, weight, mean, rstd, dx, dweight, dbias, L, rms, false);
  else backward_impl<double>(args, dy, x, weight, mean, rstd, dx, dweight, dbias, L, rms, false);
}

}  // namespace

void register_norm_rows(py::module_& m) {
  sig::norm_rows(m, &row_norm_forward, &row_norm_backward);
}

}  // namespace optkern
