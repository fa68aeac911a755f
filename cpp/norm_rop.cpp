// R-operator of batch norm (training mode) and layer norm over an (N, D)
// array, for the exact Hessian-vector product of the built-in MLP. The math
// is rules/norm.hpp's norm_rop_*; here are the loops. Groups (the sets sharing
// one mean and rstd) are the rows (axis 1: layer norm) or the columns (axis 0:
// batch norm). Every group mean and every column sum is accumulated by one
// thread in a fixed order, so results do not depend on the thread count.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "py_arrays.hpp"
#include "norm_cpu.hpp"
#include "optkern/norm_rop.hpp"
#include "optkern/signatures.hpp"

namespace optkern {
namespace {
namespace py = pybind11;
using namespace normcpu;
using namespace rop;

// Columns per work item when groups are columns: the accumulators of a block
// stay in registers / L1 while the rows stream past.
constexpr int64_t kCols = 64;

// Work item i (row i, or column block i) of the per-group sums of Terms,
// stored by term: out[k * G + group] = scale * Σ.
template <class Terms> struct GroupSums {
  using T = typename Terms::value_type;
  static constexpr int K = Terms::K;
  Terms f;
  int64_t N, D;
  T scale;
  T* out;
  int64_t groups() const { return Terms::axis == 1 ? N : D; }
  int64_t items() const { return Terms::axis == 1 ? N : (D + kCols - 1) / kCols; }
  OK_INLINE void operator()(int64_t i) const {
    const int64_t G = groups();
    if (Terms::axis == 1) {
      T s[K];
      lane_sums<K, T>(D, [&](int64_t d, T* v) { f(i, d, v); }, s);
      for (int k = 0; k < K; ++k) out[k * G + i] = s[k] * scale;
      return;
    }
    // A column's N terms one after the other, in double: in T (float32) N sequential additions
    // rounded alike for terms of a common offset (dy = 1 + small at N = 16K: R{dβ} 2e-6 off, the
    // hvp's dh 5e-5 of its size where batch_norm_backward's, summed in double, is 2e-6).
    const int64_t d0 = i * kCols, nd = std::min(kCols, D - d0);
    double s[K][kCols] = {};
    for (int64_t n = 0; n < N; ++n) {
#pragma omp simd
      for (int64_t j = 0; j < nd; ++j) {
        T v[K];
        f(n, d0 + j, v);
        for (int k = 0; k < K; ++k) s[k][j] += double(v[k]);
      }
    }
    for (int k = 0; k < K; ++k)
      for (int64_t j = 0; j < nd; ++j) out[k * G + d0 + j] = T(s[k][j] * double(scale));
  }
};

// Row n of an element functor (FwdElement or BwdElement); bad[n]: whether an output of the row is
// not finite (the rows that may need the scaled redo, rop::fwd_group_scaled).
template <class E> struct RowApply {
  E e;
  char* bad;
  OK_INLINE void operator()(int64_t n) const {
    using T = decltype(e.nonfinite(0));
    T z = T(0);  // (0, or NaN after a non-finite output: any order of the sum gives the same)
#pragma omp simd reduction(+ : z)
    for (int64_t d = 0; d < e.s.D; ++d) {
      e(n, d);
      z += e.nonfinite(n * e.s.D + d);
    }
    bad[n] = !(z == T(0));
  }
};

template <class T, int A> using FwdApply = RowApply<FwdElement<T, A>>;
template <class T, int A> using BwdApply = RowApply<BwdElement<T, A>>;
template <class T, int A> using FwdSums = GroupSums<FwdTerms<T, A>>;
template <class T, int A> using BwdSums = GroupSums<BwdTerms<T, A>>;
template <class T, int A> using ParamSums = GroupSums<ParamTerms<T, A>>;

// Multi-versioned item loops for both dtypes and axes (GCC target_clones
// needs plain functions).
#define OK_ROP_CLONE(Kernel, T, A)                                               \
  OK_CLONES void run_items(const Kernel<T, A>& k, int64_t i0, int64_t i1) {     \
    for (int64_t i = i0; i < i1; ++i) k(i);                                     \
  }
#define OK_ROP_CLONES(Kernel) \
  OK_ROP_CLONE(Kernel, float, 0) OK_ROP_CLONE(Kernel, float, 1) OK_ROP_CLONE(Kernel, double, 0) OK_ROP_CLONE(Kernel, double, 1)
OK_ROP_CLONES(FwdSums)
OK_ROP_CLONES(BwdSums)
OK_ROP_CLONES(ParamSums)
OK_ROP_CLONES(FwdApply)
OK_ROP_CLONES(BwdApply)

template <class K> void run_all(const K& k, int64_t items, int64_t work) {
  parallel_for(items, work, [&](int64_t i) { run_items(k, i, i + 1); });
}

// The groups whose outputs are not finite, from RowApply's rows (mx: also those whose m(x̂ R{h}) is not).
template <class E>
std::vector<int64_t> bad_groups(const E& e, const std::vector<char>& bad_rows, const decltype(e.nonfinite(0))* mx) {
  const int64_t N = e.s.N, D = e.s.D, G = e.s.groups();
  std::vector<char> bad(size_t(G), 0);
  for (int64_t n = 0; n < N; ++n) {
    if (!bad_rows[size_t(n)]) continue;
    for (int64_t d = 0; d < D; ++d)
      if (!rules::finite_(e.nonfinite(n * D + d))) bad[size_t(e.s.group(n, d))] = 1;
  }
  std::vector<int64_t> out;
  for (int64_t g = 0; g < G; ++g)
    if (bad[size_t(g)] || (mx && !rules::finite_(mx[g]))) out.push_back(g);
  return out;
}

template <class Terms, class T> void group_sums(const Terms& f, int64_t N, int64_t D, T scale, T* out) {
  const GroupSums<Terms> k{f, N, D, scale, out};
  run_all(k, k.items(), 3 * N * D);  // (about three arrays per element, parallel.hpp)
}

// The (N, D) shape of `h` and the checked statistics.
struct Shape {
  int64_t N, D, G;
};

Shape shape_of(py::handle h, int axis) {
  if (axis != 0 && axis != 1)
    throw py::value_error("axis: must be 0 (batch norm) or 1 (layer norm), got " + std::to_string(axis));
  const auto a = py::reinterpret_borrow<py::array>(h);
  if (a.ndim() != 2) throw py::value_error("h: expected a 2-D array (N, D), got " + std::to_string(a.ndim()) + "-D");
  const int64_t N = a.shape(0), D = a.shape(1);
  return {N, D, axis == 1 ? N : D};
}

template <class T, int A>
Norm<T, A> saved(HostArgs& args, py::handle h, py::handle mean, py::handle rstd, const Shape& S) {
  return {args.get<T>(h, "h", S.N * S.D, false), args.shaped<T>(mean, "mean", {S.G}, false),
          args.shaped<T>(rstd, "rstd", {S.G}, false), S.N, S.D};
}

template <class T, int A>
void fwd_impl(const py::dtype& dt, const Shape& S, py::handle h, py::handle mean, py::handle rstd, py::handle rh,
              py::handle w, py::handle vw, py::handle vb, py::handle ry, py::handle rxhat, py::handle m_xrh) {
  HostArgs args(dt);
  const int64_t n = S.N * S.D;
  FwdElement<T, A> a{};
  a.s = saved<T, A>(args, h, mean, rstd, S);
  a.rh = args.shaped<T>(rh, "rh", {S.N, S.D}, false);
  a.w = args.shaped<T>(w, "weight", {S.D}, false);
  a.vw = args.shaped<T>(vw, "vweight", {S.D}, false);
  a.vb = args.shaped<T>(vb, "vbias", {S.D}, false);
  a.ry = args.shaped<T>(ry, "ry", {S.N, S.D}, true);
  a.rxhat = args.shaped<T>(rxhat, "rxhat", {S.N, S.D}, true);
  T* mx = args.shaped<T>(m_xrh, "m_xrh", {S.G}, true);
  args.check_overlap();
  const ChannelScaling<T> scaled(a.s.mean, a.s.rstd, S.G);  // (where h - mean may overflow: rop::Norm)
  a.s.scaled = scaled.data();
  std::vector<T> means(size_t(2 * S.G));
  a.means = means.data();
  py::gil_scoped_release nogil;
  if (n == 0) {  // empty groups have no mean
    std::fill(mx, mx + S.G, T(NAN));
    return;
  }
  group_sums(FwdTerms<T, A>{a.s, a.rh}, S.N, S.D, T(1) / T(A == 1 ? S.D : S.N), means.data());
  std::copy(means.begin() + S.G, means.end(), mx);
  std::vector<char> bad_rows(size_t(S.N));
  run_all(FwdApply<T, A>{a, bad_rows.data()}, S.N, 3 * n);
  for (const int64_t g : bad_groups(a, bad_rows, mx)) fwd_group_scaled(a, mx, g);  // (rare: directions near the max)
}

template <class T, int A>
void bwd_impl(const py::dtype& dt, const Shape& S, py::handle h, py::handle mean, py::handle rstd, py::handle dy,
              py::handle rdy, py::handle w, py::handle vw, py::handle rxhat, py::handle m_xrh, py::handle dh,
              py::handle rdh, py::handle rdw, py::handle rdb) {
  HostArgs args(dt);
  const int64_t n = S.N * S.D;
  BwdElement<T, A> a{};
  a.s = saved<T, A>(args, h, mean, rstd, S);
  a.dy = args.shaped<T>(dy, "dy", {S.N, S.D}, false);
  a.rdy = args.shaped<T>(rdy, "rdy", {S.N, S.D}, false);
  a.w = args.shaped<T>(w, "weight", {S.D}, false);
  a.vw = args.shaped<T>(vw, "vweight", {S.D}, false);
  a.rxhat = args.shaped<T>(rxhat, "rxhat", {S.N, S.D}, false);
  a.m_xrh = args.shaped<T>(m_xrh, "m_xrh", {S.G}, false);
  a.dh = args.shaped<T>(dh, "dh", {S.N, S.D}, true);
  a.rdh = args.shaped<T>(rdh, "rdh", {S.N, S.D}, true);
  T* pw = args.shaped<T>(rdw, "rdweight", {S.D}, true);
  T* pb = args.shaped<T>(rdb, "rdbias", {S.D}, true);
  args.check_overlap();
  const ChannelScaling<T> scaled(a.s.mean, a.s.rstd, S.G);  // (where h - mean may overflow: rop::Norm)
  a.s.scaled = scaled.data();
  std::vector<T> means(size_t(4 * S.G)), params(size_t(2 * S.D));
  a.means = means.data();
  py::gil_scoped_release nogil;
  if (n > 0) {
    group_sums(BwdTerms<T, A>{a.s, a.dy, a.rdy, a.w, a.vw, a.rxhat}, S.N, S.D, T(1) / T(A == 1 ? S.D : S.N),
               means.data());
    std::vector<char> bad_rows(size_t(S.N));
    run_all(BwdApply<T, A>{a, bad_rows.data()}, S.N, 5 * n);
    for (const int64_t g : bad_groups(a, bad_rows, static_cast<const T*>(nullptr))) bwd_group_scaled(a, g);
    const ParamTerms<T, A> terms{a.s, a.dy, a.rdy, a.rxhat};
    group_sums(terms, S.N, S.D, T(1), params.data());
    for (int64_t d = 0; d < S.D; ++d)  // (rare: the columns of directions near the max)
      if (!rules::finite_(params[size_t(d)]) || !rules::finite_(params[size_t(S.D + d)]))
        param_col_scaled(terms, d, params.data(), params.data() + S.D);
  }
  std::copy(params.begin(), params.begin() + S.D, pw);
  std::copy(params.begin() + S.D, params.end(), pb);
}

// f(dtype, shape, T{}, axis constant) for the dtype of `h` and the axis.
template <class F> void dispatch(py::handle h, int axis, F&& f) {
  const py::dtype dt = float_dtype<HostArrays>(h, "h");
  const Shape S = shape_of(h, axis);
  using A0 = std::integral_constant<int, 0>;
  using A1 = std::integral_constant<int, 1>;
  if (dt.itemsize() == 4) axis == 0 ? f(dt, S, float{}, A0{}) : f(dt, S, float{}, A1{});
  else axis == 0 ? f(dt, S, double{}, A0{}) : f(dt, S, double{}, A1{});
}

void norm_rop_fwd(py::handle h, py::handle mean, py::handle rstd, py::handle rh, py::handle w, py::handle vw,
                  py::handle vb, py::handle ry, py::handle rxhat, py::handle m_xrh, int axis) {
  dispatch(h, axis, [&](const py::dtype& dt, const Shape& S, auto t, auto a) {
    fwd_impl<decltype(t), decltype(a)::value>(dt, S, h, mean, rstd, rh, w, vw, vb, ry, rxhat, m_xrh);
  });
}

void norm_rop_bwd(py::handle h, py::handle mean, py::handle rstd, py::handle dy, py::handle rdy, py::handle w,
                  py::handle vw, py::handle rxhat, py::handle m_xrh, py::handle dh, py::handle rdh, py::handle rdw,
                  py::handle rdb, int axis) {
  dispatch(h, axis, [&](const py::dtype& dt, const Shape& S, auto t, auto a) {
    bwd_impl<decltype(t), decltype(a)::value>(dt, S, h, mean, rstd, dy, rdy, w, vw, rxhat, m_xrh, dh, rdh, rdw, rdb);
  });
}

}  // namespace

void register_norm_rop(py::module_& m) {
  sig::norm_rop(m, &norm_rop_fwd, &norm_rop_bwd);
}

}  // namespace optkern
