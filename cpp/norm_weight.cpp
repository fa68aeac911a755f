// Weight normalization on the CPU: v is (rows, M); row r of the result is
// w_r = g_r v_r / ‖v_r‖ (rules/weight_norm.hpp for the backward). Rows are
// independent and each is reduced in a fixed order.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "half_stage.hpp"
#include "py_arrays.hpp"
#include "norm_cpu.hpp"
#include "optkern/norm_layout.hpp"
#include "optkern/rules/weight_norm.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace {
namespace py = pybind11;
using namespace normcpu;

// P, Q: how v, dw / w, dv are read and written (pointers; half storage: half.hpp's views of a row
// loaded to float32).
template <class T, class P = const T*, class Q = T*> struct WnForward {
  P v;
  const T* g;
  Q w;
  T* norm;
  int64_t M;
  half::Region region(int64_t r) const { return {r * M, 1, M, M}; }
  void bind(P v_, P, Q w_) { v = v_, w = w_; }
  OK_INLINE void operator()(int64_t r) const {
    const T* OK_RESTRICT vr = v + r * M;
    T* OK_RESTRICT wr = w + r * M;
    const T nrm = row_norm2(vr, M);
    norm[r] = nrm;
    if (rules::is_subnormal(nrm)) {
      // A subnormal ‖v‖ kept few digits (float64 v = [5e-324, 5e-324]: ‖v‖ = 5e-324, w = [g, g] where
      // g [0.71, 0.71]; float32 v ~ 1e-40: ~5 digits): w from v 2^-b and ‖v‖ 2^-b, in range (exact
      // digits). The saved norm stays the subnormal ‖v‖. Rounded several times: the scaled squares
      // summed as sum_squares does (block_sum, not one T accumulator over a long row rounded every
      // addition alike: w 1.3e-4 off for 65536 values ±1e-42), that sum rounded to T, its square root
      // in T, then each v 2^-b / n and g times it rounded (the GPU's the same, its squares in double).
      T av = T(0);
      for (int64_t j = 0; j < M; ++j) av = rules::max_abs(av, vr[j]);
      const int b = rules::scale_exp(av);
      const T n = std::sqrt(T(block_sum<T>(M, [&](int64_t j) {
        const T u = rules::scale2(vr[j], -b);
        return u * u;
      })));
      for (int64_t j = 0; j < M; ++j) wr[j] = g[r] * (rules::scale2(vr[j], -b) / n);
      return;
    }
    const T scale = rules::weight_norm_scale(g[r], nrm);
    if (!rules::weight_norm_scale_ok(scale, g[r], nrm)) {  // g / ‖v‖ overflowed or lost digits, v / ‖v‖ did not
      for (int64_t j = 0; j < M; ++j) wr[j] = g[r] * (vr[j] / nrm);
      return;
    }
#pragma omp simd
    for (int64_t j = 0; j < M; ++j) wr[j] = scale * vr[j];
  }
};

template <class T, class P = const T*, class Q = T*> struct WnBackward {
  P dw, v;
  const T *g, *norm;
  Q dv;
  T* dg;
  int64_t M;
  half::Region region(int64_t r) const { return {r * M, 1, M, M}; }
  void bind(P v_, P dw_, Q dv_) { v = v_, dw = dw_, dv = dv_; }
  OK_INLINE void operator()(int64_t r) const {
    const T* OK_RESTRICT dwr = dw + r * M;
    const T* OK_RESTRICT vr = v + r * M;
    T* OK_RESTRICT dvr = dv + r * M;
    if (rules::weight_norm_single(M, T(dwr[0]), T(vr[0]), g[r])) {  // (one element: exact, rules/weight_norm.hpp)
      dg[r] = rules::weight_norm_single_dg(T(dwr[0]), T(vr[0]));
      dvr[0] = T(0);
      return;
    }
    // (Σ in double, rounded once, as ‖v‖² is: 32 float32 lanes of M / 32 terms each left s ~1e-5 off
    // for a row of 1e6 values, and dv, which cancels where dw is near parallel to v, 2e-3 - 7e-3)
    const T s = T(block_sum<T>(M, [&](int64_t j) { return dwr[j] * vr[j]; }));
    if (rules::weight_norm_s_small(s, T(M)) && redo(r, true)) return;  // (s underflowed: rules/weight_norm.hpp)
    const T nrm = norm[r];
    dg[r] = s / nrm;
    const T scale = rules::weight_norm_scale(g[r], nrm), k = rules::weight_norm_k(s, nrm);
    const bool k_ok = rules::weight_norm_k_ok(k, s, nrm);
    // (g / ‖v‖ or s / ‖v‖ out of the normal range, a subnormal ‖v‖: rules/weight_norm.hpp)
    if (rules::weight_norm_bwd_scaled(scale, g[r], nrm, k_ok, dg[r]) && redo(r, false)) return;  // (rare rows)
    bool ok;  // (whether every dv is finite)
    if (!k_ok) {  // s / ‖v‖² out of range (rules/weight_norm.hpp): rare, slower
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
  // (rules/weight_norm.hpp): row r again, dw, v and g scaled (rare). False, writing nothing, where no
  // scaling applies (the plain results stand).
  bool redo(int64_t r, bool small) const {
    const T* dwr = dw + r * M;
    const T* vr = v + r * M;
    T* dvr = dv + r * M;
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
    if (!rules::weight_norm_redo_scales(sc, g[r])) return false;
    // (Σ in double, rounded once, as sum_squares: float32 accumulators over a long row left dg 1.3e-4 off)
    const T s = T(block_sum<T>(M, [&](int64_t j) {
      return rules::scale2(dwr[j], -sc.a) * rules::scale2(vr[j], -sc.b);
    }));
    const T ss = T(block_sum<T>(M, [&](int64_t j) {
      const T vs = rules::scale2(vr[j], -sc.b);
      return vs * vs;
    }));
    // A subnormal saved ‖v‖ kept few digits (float32 v ~ 1e-40: ~5), and dv = (g / ‖v‖)(dw - s v / ‖v‖²)
    // cancels where dw is near parallel to v: there ‖v‖ 2^-b from the scaled row (in range, exact digits).
    const auto q = rules::is_subnormal(norm[r]) ? rules::weight_norm_scaled_at(s, std::sqrt(ss), g[r], sc)
                                                : rules::weight_norm_scaled(s, norm[r], g[r], sc);
    dg[r] = rules::weight_norm_dg_scaled(q);
    for (int64_t j = 0; j < M; ++j) dvr[j] = rules::weight_norm_dv_rescaled(dwr[j], vr[j], q);
    return true;
  }
};

OK_NORM_CLONE_RANGE(WnForward)
OK_NORM_CLONE_RANGE(WnBackward)
using half::HalfIn;
using half::HalfIO;
using half::HalfOut;
OK_CLONES void run_range(const WnForward<float, HalfIn, HalfOut>& k, const HalfIO& h, int64_t r0, int64_t r1) {
  half::tasks(k, h, r0, r1);
}
OK_CLONES void run_range(const WnBackward<float, HalfIn, HalfOut>& k, const HalfIO& h, int64_t r0, int64_t r1) {
  half::tasks(k, h, r0, r1);
}

// h: half storage's arrays (for kernels of HalfIn views; else null: the kernel's own pointers).
template <class K> void run_rows(const K& k, const HalfIO* h, int64_t rows, int64_t M) {
  parallel_ranges(rows, M, [&](int64_t r0, int64_t r1) {
    if constexpr (std::is_same_v<decltype(k.v), HalfIn>) run_range(k, *h, r0, r1);
    else run_range(k, r0, r1);
  });
}

void check_rows(py::handle v, int64_t rows, int64_t M) {
  check_weight_rows(int64_t(py::reinterpret_borrow<py::array>(v).size()), rows, M);
}

// S: the storage type (uint16_t: half, bf16 says which; ‖v‖ in float32).
template <class S>
void fwd(HostArgs& args, py::handle v_h, py::handle g_h, py::handle w_h, py::handle n_h, int64_t rows, int64_t M,
         bool bf16) {
  using T = half::compute_t<S>;
  constexpr bool kHalf = !std::is_same_v<S, T>;
  std::conditional_t<kHalf, WnForward<T, HalfIn, HalfOut>, WnForward<T>> k{};
  const S* v = args.get<S>(v_h, "v", rows * M, false);
  const S* g = args.get<S>(g_h, "g", rows, false);
  S* w = args.get<S>(w_h, "out", rows * M, true);
  k.norm = args.get<T>(n_h, "norm", py::dtype::of<T>(), rows, true);
  k.M = M;
  args.check_overlap();
  const half::Params<S> gp(g, rows, T(1), bf16);
  k.g = gp.p;
  py::gil_scoped_release nogil;
  if constexpr (kHalf) {
    const HalfIO h{v, nullptr, w, bf16};
    run_rows(k, &h, rows, M);
  } else {
    k.v = v, k.w = w;
    run_rows(k, nullptr, rows, M);
  }
}

template <class S>
void bwd(HostArgs& args, py::handle dw_h, py::handle v_h, py::handle g_h, py::handle n_h, py::handle dv_h,
         py::handle dg_h, int64_t rows, int64_t M, bool bf16) {
  using T = half::compute_t<S>;
  constexpr bool kHalf = !std::is_same_v<S, T>;
  std::conditional_t<kHalf, WnBackward<T, HalfIn, HalfOut>, WnBackward<T>> k{};
  const S* dw = args.get<S>(dw_h, "dw", rows * M, false);
  const S* v = args.get<S>(v_h, "v", rows * M, false);
  const S* g = args.get<S>(g_h, "g", rows, false);
  k.norm = args.get<T>(n_h, "norm", py::dtype::of<T>(), rows, false);
  S* dv = args.get<S>(dv_h, "dv", rows * M, true);
  S* dg = args.get<S>(dg_h, "dg", rows, true);
  k.M = M;
  args.check_overlap();
  const half::Params<S> gp(g, rows, T(1), bf16);
  k.g = gp.p;
  py::gil_scoped_release nogil;
  if constexpr (kHalf) {  // (dg: rows values in float32, rounded once at the end)
    std::vector<float> dgf(static_cast<size_t>(rows));
    k.dg = dgf.data();
    const HalfIO h{v, dw, dv, bf16};
    run_rows(k, &h, rows, M);
    half::from_float(dgf.data(), dg, rows, bf16);
  } else {
    k.dw = dw, k.v = v, k.dv = dv, k.dg = dg;
    run_rows(k, nullptr, rows, M);
  }
}

void weight_norm_forward(py::handle v, py::handle g, py::handle out, py::handle norm, int64_t rows, int64_t M) {
  const py::dtype dt = float_dtype<HostArrays>(v, "v", true);
  check_rows(v, rows, M);
  HostArgs args(dt);
  if (half::is_half(dt)) fwd<uint16_t>(args, v, g, out, norm, rows, M, half::is_bf16(dt));
  else if (dt.itemsize() == 4) fwd<float>(args, v, g, out, norm, rows, M, false);
  else fwd<double>(args, v, g, out, norm, rows, M, false);
}

void weight_norm_backward(py::handle dw, py::handle v, py::handle g, py::handle norm, py::handle dv, py::handle dg,
                          int64_t rows, int64_t M) {
  const py::dtype dt = float_dtype<HostArrays>(v, "v", true);
  check_rows(v, rows, M);
  HostArgs args(dt);
  if (half::is_half(dt)) bwd<uint16_t>(args, dw, v, g, norm, dv, dg, rows, M, half::is_bf16(dt));
  else if (dt.itemsize() == 4) bwd<float>(args, dw, v, g, norm, dv, dg, rows, M, false);
  else bwd<double>(args, dw, v, g, norm, dv, dg, rows, M, false);
}

}  // namespace

void register_norm_weight(py::module_& m) {
  sig::norm_weight(m, &weight_norm_forward, &weight_norm_backward);
}

}  // namespace optkern
