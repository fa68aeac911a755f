// Row normalizations on the CPU: layer norm, RMS norm, group norm and
// instance norm are one loop. x is (R, M) with M = Cg * S; row r uses the
// affine entries (r % G) * Cg + c for its c-th run of S elements
//   layer / RMS norm: G = 1, Cg = M, S = 1      group norm: R = N G, Cg = C / G
//   instance norm:    G = C, Cg = 1, S = spatial
// Rows go to OpenMP threads whole and each row is reduced in a fixed order,
// so results are bitwise identical for any thread count. Parameter gradients
// are summed per fixed block of rows, then over blocks in order.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <vector>

#include "half_stage.hpp"
#include "py_arrays.hpp"
#include "norm_cpu.hpp"
#include "optkern/norm_layout.hpp"
#include "optkern/rules/norm.hpp"
#include "optkern/signatures.hpp"

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

template <class T> OK_INLINE void row_forward(const RowArgs<T>& a, int64_t r) {
  const int64_t M = a.Cg * a.S;
  const T* OK_RESTRICT x = a.x + r * M;
  T* OK_RESTRICT y = a.y + r * M;
  T mu = T(0), rs;
  if (a.rms) {
    const T ss = sum_squares(x, M);
    if (rules::stats_ok(T(0), ss, a.eps)) {
      rs = rules::inv_rms(ss, T(M), a.eps);
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
  }
  a.rstd[r] = rs;
  const T* OK_RESTRICT w = a.w + (r % a.G) * a.Cg;
  const T* OK_RESTRICT b = a.b + (r % a.G) * a.Cg;
  prefetch_row(a.x + (r + 1) * M, r + 1 < a.R ? M : 0);
  with_normalizer(mu, rs, [&](const auto& nz) OK_INLINE_LAMBDA {  // (scaled where x - mu may overflow: rules/norm.hpp)
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
  T *dx, *pdw, *pdb;                   // pdw, pdb: per-block partials (null: not wanted)
  char* bad;                           // bad[r]: row r's dx is not finite (redone: redo_rows)
  int64_t R, G, Cg, S;
  bool rms, stream;  // stream: non-temporal stores of dx (large outputs)
};

// dx of row r, and its contributions Σ dy x̂ and Σ dy to the block partials; false when a dx
// written is not finite.
template <class T> OK_INLINE bool row_backward(const RowGradArgs<T>& a, int64_t r, T* pdw, T* pdb) {
  const int64_t M = a.Cg * a.S;
  const T* OK_RESTRICT x = a.x + r * M;
  const T* OK_RESTRICT dy = a.dy + r * M;
  T* OK_RESTRICT dx = a.dx + r * M;
  const T mu = a.rms ? T(0) : a.mean[r], rs = a.rstd[r];
  bool ok = true;
  with_normalizer(mu, rs, [&](const auto& nz) OK_INLINE_LAMBDA {  // (scaled where x - mu may overflow: rules/norm.hpp)
    const int64_t w0 = (r % a.G) * a.Cg;
    const T* OK_RESTRICT w = a.w + w0;
    T sg = 0, sgx = 0;
    if (a.S == 1) {
      T s[2];  // Σ g, Σ g x̂ with g = γ dy
      lane_sums<2, T>(M, [&](int64_t j, T* v) OK_INLINE_LAMBDA {
        v[0] = dy[j] * w[j];
        v[1] = v[0] * rules::normalize(x[j], nz);
      }, s);
      sg = s[0], sgx = s[1];
    } else {
      for (int64_t c = 0; c < a.Cg; ++c) {
        const T* OK_RESTRICT dyc = dy + c * a.S;
        const T* OK_RESTRICT xc = x + c * a.S;
        T s[2];  // Σ dy, Σ dy x̂ over the channel's run
        lane_sums<2, T>(a.S, [&](int64_t i, T* v) OK_INLINE_LAMBDA {
          v[0] = dyc[i];
          v[1] = dyc[i] * rules::normalize(xc[i], nz);
        }, s);
        sg += w[c] * s[0];
        sgx += w[c] * s[1];
        if (pdw) pdw[w0 + c] += s[1];
        if (pdb) pdb[w0 + c] += s[0];
      }
    }
    const T mg = a.rms ? T(0) : sg / T(M), mgx = sgx / T(M);
    if (a.S == 1) {
      ok = write_row_finite(dx, M, a.stream, [&](int64_t j) OK_INLINE_LAMBDA {
        return rules::norm_dx(dy[j], w[j], rules::normalize(x[j], nz), rs, mg, mgx);
      });
      if (pdw || pdb) {
#pragma omp simd
        for (int64_t j = 0; j < M; ++j) {
          if (pdw) pdw[w0 + j] += dy[j] * rules::normalize(x[j], nz);
          if (pdb) pdb[w0 + j] += dy[j];
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

// dy near the max (rules/norm.hpp): the rows whose dx came out non-finite again, dy and γ scaled.
template <class T> void redo_rows(const RowGradArgs<T>& a) {
  const int64_t M = a.Cg * a.S;
  for (int64_t r = 0; r < a.R; ++r) {
    if (!a.bad[r]) continue;
    const T mu = a.rms ? T(0) : a.mean[r], rs = a.rstd[r];
    const int64_t o = r * M, w0 = (r % a.G) * a.Cg;
    dx_group_scaled<T>(
        M, rs, a.rms,
        [&](int64_t j) {
          return GradElem<T>{a.dy[o + j], a.w[w0 + j / a.S], rules::normalize_safe(a.x[o + j], mu, rs)};
        },
        [&](int64_t j, T v) { a.dx[o + j] = v; });
  }
}

// dγ[i], dβ[i] again where not finite: the entry's elements are run c = i % Cg of the rows r = i / Cg + k G.
template <class T> void redo_params(const RowGradArgs<T>& a, T* dw, T* db) {
  const int64_t M = a.Cg * a.S, W = a.G * a.Cg;
  for (int64_t i = 0; i < W; ++i) {
    if ((!dw || rules::finite_(dw[i])) && (!db || rules::finite_(db[i]))) continue;
    const int64_t g = i / a.Cg, c = i % a.Cg;
    param_sums_scaled<T>(
        (a.R / a.G) * a.S,
        [&](int64_t t) {
          const int64_t r = g + (t / a.S) * a.G, e = r * M + c * a.S + t % a.S;
          const T mu = a.rms ? T(0) : a.mean[r];
          return GradElem<T>{a.dy[e], T(0), rules::normalize_safe(a.x[e], mu, a.rstd[r])};
        },
        dw ? dw + i : nullptr, db ? db + i : nullptr);
  }
}

// Multi-versioned row loops (GCC target_clones needs plain functions).
OK_CLONES void rows_fwd(const RowArgs<float>& a, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) row_forward(a, r);
  if (a.stream) stream_fence();
}
OK_CLONES void rows_fwd(const RowArgs<double>& a, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) row_forward(a, r);
  if (a.stream) stream_fence();
}
OK_CLONES void rows_bwd(const RowGradArgs<float>& a, int64_t r0, int64_t r1, float* pdw, float* pdb) {
  for (int64_t r = r0; r < r1; ++r) a.bad[r] = !row_backward(a, r, pdw, pdb);
  if (a.stream) stream_fence();
}
OK_CLONES void rows_bwd(const RowGradArgs<double>& a, int64_t r0, int64_t r1, double* pdw, double* pdb) {
  for (int64_t r = r0; r < r1; ++r) a.bad[r] = !row_backward(a, r, pdw, pdb);
  if (a.stream) stream_fence();
}

template <class T>
void forward_impl(HostArgs& args, py::handle x_h, py::handle w_h, py::handle b_h, py::handle y_h,
                  py::handle mean_h, py::handle rstd_h, const RowLayout& L, double eps, bool rms) {
  const int64_t n = L.R * L.M();
  RowArgs<T> a{};
  a.x = args.get<T>(x_h, "x", n, false);
  a.w = args.opt<T>(w_h, "weight", L.W(), false);
  a.b = args.opt<T>(b_h, "bias", L.W(), false);
  a.y = args.get<T>(y_h, "out", n, true);
  a.mean = rms ? nullptr : args.get<T>(mean_h, "mean", L.R, true);
  a.rstd = args.get<T>(rstd_h, rms ? "inv_rms" : "rstd", L.R, true);
  args.check_overlap();
  const std::vector<T> ones(size_t(L.W()), T(1)), zeros(size_t(L.W()), T(0));
  if (!a.w) a.w = ones.data();
  if (!a.b) a.b = zeros.data();
  a.R = L.R, a.G = L.G, a.Cg = L.Cg, a.S = L.S, a.eps = T(eps), a.rms = rms;
  a.stream = stream_output(n, sizeof(T));
  py::gil_scoped_release nogil;
  parallel_ranges(L.R, L.M(), [&](int64_t r0, int64_t r1) { rows_fwd(a, r0, r1); });
}

void row_norm_forward(py::handle x, py::object weight, py::object bias, py::handle out, py::object mean,
                      py::handle rstd, int64_t rows, int64_t groups, int64_t group_channels, int64_t spatial,
                      double eps, bool rms) {
  const py::dtype dt = float_dtype<HostArrays>(x, "x", true);
  const RowLayout L = row_layout(py::reinterpret_borrow<py::array>(x).size(), rows, groups, group_channels, spatial);
  if (!(eps > 0.0)) throw py::value_error("eps: must be > 0, got " + std::to_string(eps));
  if (half::is_half(dt)) {  // float32 kernels on float32 copies (half_stage.hpp)
    half::HalfStage st(dt);
    const int64_t n = L.R * L.M();
    const py::object xf = st.in(x, "x", n), wf = st.in(weight, "weight", L.W()), bf = st.in(bias, "bias", L.W());
    const py::object yf = st.out(out, "out", n);
    if (!rms) st.stat(mean, "mean", L.R, true);
    st.stat(rstd, rms ? "inv_rms" : "rstd", L.R, true);
    st.check();
    HostArgs fargs(py::dtype::of<float>());
    forward_impl<float>(fargs, xf, wf, bf, yf, mean, rstd, L, eps, rms);
    st.finish();
    return;
  }
  HostArgs args(dt);
  if (dt.itemsize() == 4) forward_impl<float>(args, x, weight, bias, out, mean, rstd, L, eps, rms);
  else forward_impl<double>(args, x, weight, bias, out, mean, rstd, L, eps, rms);
}

template <class T>
void backward_impl(HostArgs& args, py::handle dy_h, py::handle x_h, py::handle w_h, py::handle mean_h,
                   py::handle rstd_h, py::handle dx_h, py::handle dw_h, py::handle db_h, const RowLayout& L, bool rms) {
  const int64_t n = L.R * L.M();
  RowGradArgs<T> a{};
  a.dy = args.get<T>(dy_h, "dy", n, false);
  a.x = args.get<T>(x_h, "x", n, false);
  a.w = args.opt<T>(w_h, "weight", L.W(), false);
  a.mean = rms ? nullptr : args.get<T>(mean_h, "mean", L.R, false);
  a.rstd = args.get<T>(rstd_h, rms ? "inv_rms" : "rstd", L.R, false);
  a.dx = args.get<T>(dx_h, "dx", n, true);
  T* dw = args.opt<T>(dw_h, "dweight", L.W(), true);
  T* db = args.opt<T>(db_h, "dbias", L.W(), true);
  args.check_overlap();
  const std::vector<T> ones(size_t(L.W()), T(1));
  if (!a.w) a.w = ones.data();
  a.R = L.R, a.G = L.G, a.Cg = L.Cg, a.S = L.S, a.rms = rms;
  a.stream = stream_output(n, sizeof(T));
  // Fixed row blocks (from the shape only) hold the parameter-gradient partials.
  // At most kGradBlocks blocks, and partials of at most ~4M values each.
  const int64_t nblk = (dw || db) ? std::min<int64_t>({L.R, kGradBlocks, std::max<int64_t>(1, (int64_t(1) << 22) / L.W())}) : 1;
  const int64_t W = L.W();
  std::vector<T> pdw(dw ? size_t(nblk * W) : 0, T(0)), pdb(db ? size_t(nblk * W) : 0, T(0));
  std::vector<char> bad(size_t(L.R));
  a.bad = bad.data();
  py::gil_scoped_release nogil;
  if (!dw && !db) {
    parallel_ranges(L.R, L.M(), [&](int64_t r0, int64_t r1) { rows_bwd(a, r0, r1, (T*)nullptr, (T*)nullptr); });
    redo_rows(a);
    return;
  }
  parallel_for(nblk, 3 * n, [&](int64_t k) {  // dy, x, dx
    const int64_t r0 = L.R * k / nblk, r1 = L.R * (k + 1) / nblk;
    rows_bwd(a, r0, r1, dw ? pdw.data() + k * W : nullptr, db ? pdb.data() + k * W : nullptr);
  });
  parallel_for(W, nblk * W, [&](int64_t i) {
    T sw = 0, sb = 0;
    for (int64_t k = 0; k < nblk; ++k) {
      if (dw) sw += pdw[size_t(k * W + i)];
      if (db) sb += pdb[size_t(k * W + i)];
    }
    if (dw) dw[i] = sw;
    if (db) db[i] = sb;
  });
  redo_rows(a);
  redo_params(a, dw, db);
}

void row_norm_backward(py::handle dy, py::handle x, py::object weight, py::object mean, py::handle rstd,
                       py::handle dx, py::object dweight, py::object dbias, int64_t rows, int64_t groups,
                       int64_t group_channels, int64_t spatial, bool rms) {
  const py::dtype dt = float_dtype<HostArrays>(x, "x", true);
  const RowLayout L = row_layout(py::reinterpret_borrow<py::array>(x).size(), rows, groups, group_channels, spatial);
  if (half::is_half(dt)) {  // float32 kernels on float32 copies (half_stage.hpp)
    half::HalfStage st(dt);
    const int64_t n = L.R * L.M();
    const py::object dyf = st.in(dy, "dy", n), xf = st.in(x, "x", n), wf = st.in(weight, "weight", L.W());
    if (!rms) st.stat(mean, "mean", L.R, false);
    st.stat(rstd, rms ? "inv_rms" : "rstd", L.R, false);
    const py::object dxf = st.out(dx, "dx", n), dwf = st.out(dweight, "dweight", L.W());
    const py::object dbf = st.out(dbias, "dbias", L.W());
    st.check();
    HostArgs fargs(py::dtype::of<float>());
    backward_impl<float>(fargs, dyf, xf, wf, mean, rstd, dxf, dwf, dbf, L, rms);
    st.finish();
    return;
  }
  HostArgs args(dt);
  if (dt.itemsize() == 4) backward_impl<float>(args, dy, x, weight, mean, rstd, dx, dweight, dbias, L, rms);
  else backward_impl<double>(args, dy, x, weight, mean, rstd, dx, dweight, dbias, L, rms);
}

}  // namespace

void register_norm_rows(py::module_& m) {
  sig::norm_rows(m, &row_norm_forward, &row_norm_backward);
}

}  // namespace optkern
