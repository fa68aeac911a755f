// Weight normalization on the CPU: v is (rows, M); row r of the result is
// w_r = g_r v_r / ‖v_r‖ (rules/norm.hpp for the backward). Rows are
// independent and each is reduced in a fixed order.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>

#include "half_stage.hpp"
#include "py_arrays.hpp"
#include "norm_cpu.hpp"
#include "optkern/rules/norm.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace {
namespace py = pybind11;
using namespace normcpu;

template <class T> struct WnForward {
  const T *v, *g;
  T *w, *norm;
  int64_t M;
  OK_INLINE void operator()(int64_t r) const {
    const T* OK_RESTRICT vr = v + r * M;
    T* OK_RESTRICT wr = w + r * M;
    const T nrm = row_norm2(vr, M);
    norm[r] = nrm;
    if (rules::is_subnormal(nrm)) {
      // A subnormal ‖v‖ kept few digits (float64 v = [5e-324, 5e-324]: ‖v‖ = 5e-324, w = [g, g] where
      // g [0.71, 0.71]; float32 v ~ 1e-40: ~5 digits): w from v 2^-b and ‖v‖ 2^-b, in range (exact
      // digits). The saved norm stays the subnormal ‖v‖.
      T av = T(0), ss = T(0);
      for (int64_t j = 0; j < M; ++j) av = rules::max_abs(av, vr[j]);
      const int b = rules::scale_exp(av);
      for (int64_t j = 0; j < M; ++j) ss += rules::scale2(vr[j], -b) * rules::scale2(vr[j], -b);
      const T n = std::sqrt(ss);
      for (int64_t j = 0; j < M; ++j) wr[j] = g[r] * (rules::scale2(vr[j], -b) / n);
      return;
    }
    const T scale = rules::weight_norm_scale(g[r], nrm);
    if (!rules::finite_(scale) && rules::finite_(nrm)) {  // g near the max: g / ‖v‖ overflows, v / ‖v‖ does not
      for (int64_t j = 0; j < M; ++j) wr[j] = g[r] * (vr[j] / nrm);
      return;
    }
#pragma omp simd
    for (int64_t j = 0; j < M; ++j) wr[j] = scale * vr[j];
  }
};

template <class T> struct WnBackward {
  const T *dw, *v, *g, *norm;
  T *dv, *dg;
  int64_t M;
  OK_INLINE void operator()(int64_t r) const {
    const T* OK_RESTRICT dwr = dw + r * M;
    const T* OK_RESTRICT vr = v + r * M;
    T* OK_RESTRICT dvr = dv + r * M;
    const T s = lane_sum<T>(M, [&](int64_t j) { return dwr[j] * vr[j]; });
    if (rules::weight_norm_s_small(s, T(M)) && redo(r, true)) return;  // (s underflowed: rules/norm.hpp)
    const T nrm = norm[r];
    dg[r] = s / nrm;
    const T scale = rules::weight_norm_scale(g[r], nrm), k = rules::weight_norm_k(s, nrm);
    bool ok;  // (whether every dv is finite)
    if (!rules::weight_norm_k_ok(k, s, nrm)) {  // s / ‖v‖² out of range (rules/norm.hpp): rare, slower
      const T sn = s / nrm;
      ok = write_row_finite(dvr, M, false, [&](int64_t j) {
        return rules::weight_norm_dv_scaled(dwr[j], vr[j], scale, sn, nrm);
      });
    } else {
      ok = write_row_finite(dvr, M, false, [&](int64_t j) { return rules::weight_norm_dv(dwr[j], vr[j], scale, k); });
    }
    if (!ok || !rules::finite_(dg[r])) redo(r, false);
  }
  // dg or dv not finite (dw or v near the max, a subnormal ‖v‖), or (small) s = Σ dw v underflowed
  // (rules/norm.hpp): row r again, dw and v scaled (rare). False, writing nothing, where no scaling
  // applies (the plain results stand).
  bool redo(int64_t r, bool small) const {
    const T* dwr = dw + r * M;
    const T* vr = v + r * M;
    if (small) {
      // (dw = 0, a row of s = 0: the plain results are exact zeros -- and frequent: a frozen or dead
      // unit, which the scaled loops below, ldexp per element, ran 30x slower. dw is finite here: s is.)
      T m = T(0);
#pragma omp simd reduction(max : m)
      for (int64_t j = 0; j < M; ++j) m = std::max(m, std::abs(dwr[j]));
      if (m == T(0)) return false;
    }
    T adw = T(0), av = T(0);
    for (int64_t j = 0; j < M; ++j) adw = rules::max_abs(adw, dwr[j]), av = rules::max_abs(av, vr[j]);
    // (scaled up as well as down: v of a subnormal ‖v‖ as much as dw near the max; v 2^-b in [1, 2), so
    // that ‖v‖ 2^-b below is in range)
    const rules::GradScale sc = rules::unit_scale(adw, av);
    if (!rules::scales(sc)) return false;
    T s = T(0), ss = T(0);
    for (int64_t j = 0; j < M; ++j) {
      const T vs = rules::scale2(vr[j], -sc.b);
      s += rules::scale2(dwr[j], -sc.a) * vs;
      ss += vs * vs;
    }
    // A subnormal saved ‖v‖ kept few digits (float32 v ~ 1e-40: ~5), and dv = (g / ‖v‖)(dw - s v / ‖v‖²)
    // cancels where dw is near parallel to v: there ‖v‖ 2^-b from the scaled row (in range, exact digits).
    const auto q = rules::is_subnormal(norm[r]) ? rules::weight_norm_scaled_at(s, std::sqrt(ss), g[r], sc)
                                                : rules::weight_norm_scaled(s, norm[r], g[r], sc);
    dg[r] = rules::weight_norm_dg_scaled(q);
    for (int64_t j = 0; j < M; ++j) dv[r * M + j] = rules::weight_norm_dv_rescaled(dwr[j], vr[j], q);
    return true;
  }
};

OK_NORM_CLONE_RANGE(WnForward)
OK_NORM_CLONE_RANGE(WnBackward)

template <class K> void run_rows(const K& k, int64_t rows, int64_t M) {
  parallel_ranges(rows, M, [&](int64_t r0, int64_t r1) { run_range(k, r0, r1); });
}

void check_rows(py::handle v, int64_t rows, int64_t M) {
  if (rows < 0 || M < 1 || rows * M != int64_t(py::reinterpret_borrow<py::array>(v).size()))
    throw py::value_error("v: expected rows * M elements");
}

template <class T> void fwd(py::handle v_h, py::handle g_h, py::handle w_h, py::handle n_h, int64_t rows, int64_t M) {
  HostArgs args(py::dtype::of<T>());
  WnForward<T> k{};
  k.v = args.get<T>(v_h, "v", rows * M, false);
  k.g = args.get<T>(g_h, "g", rows, false);
  k.w = args.get<T>(w_h, "out", rows * M, true);
  k.norm = args.get<T>(n_h, "norm", rows, true);
  k.M = M;
  args.check_overlap();
  py::gil_scoped_release nogil;
  run_rows(k, rows, M);
}

template <class T>
void bwd(py::handle dw_h, py::handle v_h, py::handle g_h, py::handle n_h, py::handle dv_h, py::handle dg_h,
         int64_t rows, int64_t M) {
  HostArgs args(py::dtype::of<T>());
  WnBackward<T> k{};
  k.dw = args.get<T>(dw_h, "dw", rows * M, false);
  k.v = args.get<T>(v_h, "v", rows * M, false);
  k.g = args.get<T>(g_h, "g", rows, false);
  k.norm = args.get<T>(n_h, "norm", rows, false);
  k.dv = args.get<T>(dv_h, "dv", rows * M, true);
  k.dg = args.get<T>(dg_h, "dg", rows, true);
  k.M = M;
  args.check_overlap();
  py::gil_scoped_release nogil;
  run_rows(k, rows, M);
}

void weight_norm_forward(py::handle v, py::handle g, py::handle out, py::handle norm, int64_t rows, int64_t M) {
  const py::dtype dt = float_dtype<HostArrays>(v, "v", true);
  check_rows(v, rows, M);
  if (half::is_half(dt)) {  // the float32 kernel on float32 copies; ‖v‖ stays float32 (half_stage.hpp)
    half::HalfStage st(dt);
    const py::object vf = st.in(v, "v", rows * M), gf = st.in(g, "g", rows), wf = st.out(out, "out", rows * M);
    st.stat(norm, "norm", rows, true);
    st.check();
    fwd<float>(vf, gf, wf, norm, rows, M);
    st.finish();
    return;
  }
  if (dt.itemsize() == 4) fwd<float>(v, g, out, norm, rows, M);
  else fwd<double>(v, g, out, norm, rows, M);
}

void weight_norm_backward(py::handle dw, py::handle v, py::handle g, py::handle norm, py::handle dv, py::handle dg,
                          int64_t rows, int64_t M) {
  const py::dtype dt = float_dtype<HostArrays>(v, "v", true);
  check_rows(v, rows, M);
  if (half::is_half(dt)) {  // the float32 kernel on float32 copies (half_stage.hpp)
    half::HalfStage st(dt);
    const py::object dwf = st.in(dw, "dw", rows * M), vf = st.in(v, "v", rows * M), gf = st.in(g, "g", rows);
    st.stat(norm, "norm", rows, false);
    const py::object dvf = st.out(dv, "dv", rows * M), dgf = st.out(dg, "dg", rows);
    st.check();
    bwd<float>(dwf, vf, gf, norm, dvf, dgf, rows, M);
    st.finish();
    return;
  }
  if (dt.itemsize() == 4) bwd<float>(dw, v, g, norm, dv, dg, rows, M);
  else bwd<double>(dw, v, g, norm, dv, dg, rows, M);
}

}  // namespace

void register_norm_weight(py::module_& m) {
  sig::norm_weight(m, &weight_norm_forward, &weight_norm_backward);
}

}  // namespace optkern
